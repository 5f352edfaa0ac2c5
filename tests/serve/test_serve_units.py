"""Fast checks of the gateway's pure parts: body parsing and validation, batching, the [serve] policy."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerasguard.errors import PolicyError
from kerasguard.policy import policy_from_mapping
from kerasguard.sandbox.model import TensorSpec
from kerasguard.serve import validation
from kerasguard.serve.batching import Batcher, bucket, buckets, merge, split
from kerasguard.serve.errors import ApiError

SPEC = (TensorSpec("pixels", (None, 4), "float32"),)
TWO = (TensorSpec("a", (None, 2), "float32"), TensorSpec("ids", (None, 3), "int32"))
CHECKS = validation.Checks(max_instances=8, max_body_bytes=1 << 20, ranges={})


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(descr: object, shape: tuple[int, ...]) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def refused(kind: str, body: bytes, specs=SPEC, checks=CHECKS) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as info:
        validation.parse(kind, body, specs, checks)
    return info.value


def test_json_layouts_agree() -> None:
    rows = validation.parse("application/json", b'{"instances": [[1,2,3,4],[5,6,7,8]]}', SPEC, CHECKS)
    cols = validation.parse(
        "application/json", b'{"inputs": {"pixels": [[1,2,3,4],[5,6,7,8]]}}', SPEC, CHECKS
    )
    bare = validation.parse("application/json", b'{"inputs": [[1,2,3,4],[5,6,7,8]]}', SPEC, CHECKS)
    for parsed in (rows, cols, bare):
        assert parsed.count == 2 and parsed.arrays[0].dtype == np.float32
        np.testing.assert_array_equal(parsed.arrays[0], [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_multi_input_instances_by_name_and_int_dtype_rules() -> None:
    body = b'{"instances": [{"a": [1, 2], "ids": [1, 2, 3]}, {"a": [3, 4], "ids": [4, 5, 6]}]}'
    parsed = validation.parse("application/json", body, TWO, CHECKS)
    assert [a.dtype.name for a in parsed.arrays] == ["float32", "int32"] and parsed.count == 2
    error = refused("application/json", b'{"inputs": {"a": [[1, 2]], "ids": [[1.5, 2, 3]]}}', TWO)
    assert error.status == 422 and "'ids'" in error.message and "rule: dtype" in error.message
    error = refused("application/json", b'{"inputs": {"a": [[1, 2]], "ids": [[9999999999, 2, 3]]}}', TWO)
    assert "outside int32" in error.message
    error = refused("application/json", b'{"inputs": {"a": [[1, 2], [3, 4]], "ids": [[1, 2, 3]]}}', TWO)
    assert "rule: batch" in error.message


def test_npy_header_that_lies_about_its_size_is_refused_before_allocation() -> None:
    # declares 10^12 float64 (8 TB) and carries 8 bytes: refused by arithmetic, nothing allocated
    body = npy_header("<f8", (10**6, 10**6)) + b"\x00" * 8
    assert refused("application/x-npy", body).reason == "malformed"
    negative = npy_header("<f4", (-1, 4)) + b"\x00" * 16
    assert refused("application/x-npy", negative).status == 400


@pytest.mark.parametrize("descr", ["|O", "<U4", "|V8", "<c8", "<M8[s]", [("a", "<f4")], [("o", "|O")]])
def test_npy_non_numeric_dtypes_are_refused(descr: object) -> None:
    error = refused("application/x-npy", npy_header(descr, (1, 4)) + b"\x00" * 64)  # type: ignore[arg-type]
    assert error.status == 422 and "rule: dtype" in error.message


def test_npy_malformed_headers_are_400_not_crashes() -> None:
    # regression: NumPy's header parser raised tokenize.TokenError here, which escaped as a 503
    unterminated = b"\x93NUMPY\x01\x00" + struct.pack("<H", 63) + b"{'descr': [('a', '<f4')".ljust(62) + b"\n"
    for body in (unterminated, b"\x93NUMPY\x09\x00", b"\x93NUMPY", b"", npy_header("<f4", (1, 4))[:-5]):
        assert refused("application/x-npy", body + b"\x00" * 16).status == 400


def test_npz_inflation_is_bounded_and_pickles_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "pixels.npy", npy_bytes(np.zeros((1 << 18, 4), "float32"))
        )  # 4 MiB inflated, ~4 KiB packed
    assert len(buf.getvalue()) < 64 * 1024
    assert refused("application/x-npz", buf.getvalue()).status == 413
    buf = io.BytesIO()
    np.savez(buf, pixels=np.array([object()] * 4, dtype=object).reshape(1, 4))
    assert refused("application/x-npz", buf.getvalue()).status == 422
    assert refused("application/x-npz", b"PK\x03\x04 not a zip").status == 400


def test_value_checks_name_input_and_rule() -> None:
    ranged = validation.Checks(8, 1 << 20, {"pixels": (0.0, 1.0)})
    error = refused("application/json", b'{"instances": [[0, 0.5, 1, 2]]}', checks=ranged)
    assert "'pixels'" in error.message and "rule: range" in error.message
    error = refused("application/json", b'{"instances": [[0, 0, 0, 1e39]]}')  # beyond float32: inf
    assert "rule: finite" in error.message
    error = refused(
        "application/json", b'{"instances": [[0, 0, 0, 0]]' + b"" + b"}".replace(b"}", b', "x": 1}')
    )
    assert error.status == 400
    assert refused("application/json", b'{"instances": [[0, 0, 0, 0]] * 9}').status == 400
    nine = b'{"instances": [' + b",".join([b"[0,0,0,0]"] * 9) + b"]}"
    assert refused("application/json", nine).reason == "batch_too_large"


def test_media_types() -> None:
    assert validation.media_type("application/json; charset=utf-8") == "application/json"
    for bad in (None, "", "text/plain", "application/python-pickle", "multipart/form-data"):
        with pytest.raises(ApiError) as info:
            validation.media_type(bad)
        assert info.value.status == 415


def test_batcher_merges_compatible_jobs_pads_and_splits() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_wait_s=0.05, queue_size=4)
        futures = [batcher.submit([np.full((n, 4), n, "float32")], n) for n in (1, 2, 3)]
        odd = batcher.submit([np.zeros((1, 5), "float32")], 1)  # another shape: next batch
        with pytest.raises(ApiError) as info:
            batcher.submit([np.zeros((1, 4), "float32")], 1)
        assert info.value.status == 503 and info.value.retry_after is not None
        batch = await batcher.next_batch()
        assert [j.count for j in batch] == [1, 2, 3]
        arrays, total = merge(batch)
        assert total == 6 and arrays[0].shape == (8, 4)  # padded to the bucket
        split(arrays[0] * 10, batch)
        for n, future in zip((1, 2, 3), futures, strict=True):
            np.testing.assert_array_equal(future.result().outputs, np.full((n, 4), n * 10))
        assert [j.count for j in await batcher.next_batch()] == [1] and not odd.done()

    asyncio.run(scenario())
    assert [bucket(n) for n in (1, 2, 3, 5, 8, 9, 20, 64, 65)] == [1, 2, 4, 8, 8, 16, 24, 64, 72]
    assert buckets(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]


def test_serve_policy_is_validated() -> None:
    policy = policy_from_mapping({"serve": {"stage": "staging", "ranges": {"digits/pixels": [-1, 16.5]}}})
    assert policy.serve.stage == "staging" and policy.serve.on_storage_error == "deny"
    assert (
        policy.serve.header_timeout_s,
        policy.serve.max_connections,
        policy.serve.keep_alive_timeout_s,
    ) == (
        10.0,
        1000,
        5,
    )
    for bad in (
        {"on_storage_error": "maybe"},
        {"rate_limit_storage": "http://example.test"},
        {"ranges": {"digits": [0, 1]}},
        {"ranges": {"digits/pixels": [2, 1]}},
        {"max_batch": 0},
        {"strip_action": "block"},
        {"stale_after_failed_polls": -1},
        {"header_timeout_s": 0},
        {"header_timeout_s": -1.5},
        {"keep_alive_timeout_s": 0},
        {"max_connections": 1},
        {"unknown": 1},
    ):
        with pytest.raises(PolicyError):
            policy_from_mapping({"serve": bad})


@pytest.mark.parametrize("storage", ["memory://", "redis://127.0.0.1:6379/0"])
def test_rate_limits_count_like_limits_does(storage: str) -> None:
    """Both paths (``limits``' own hits in memory, one script for key and tenant in Redis) keep the
    counters ``limits`` would: its own window stats agree."""
    pytest.importorskip("limits")
    from kerasguard.policy import Serve
    from kerasguard.serve.ratelimit import RateLimits

    if storage.startswith("redis"):
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
        except Exception:
            pytest.skip("no Redis on 127.0.0.1:6379")
    import secrets

    async def scenario() -> None:
        limits = RateLimits(
            Serve(rate_limit_storage=storage, key_requests_per_second=3, key_elements_per_second=10)
        )
        key, tenant = secrets.token_hex(8), "t-" + secrets.token_hex(4)
        for _ in range(3):
            await limits.request(tenant, key)
        with pytest.raises(ApiError) as info:
            await limits.request(tenant, key)
        assert info.value.status == 429 and info.value.reason == "rate_limited_key"
        stats = await limits.limiter.get_window_stats(limits.key_requests, "key", key)
        assert stats.remaining == 0
        tenant_stats = await limits.limiter.get_window_stats(limits.tenant_requests, "tenant", tenant)
        assert tenant_stats.remaining == limits.tenant_requests.amount - 4
        await limits.elements(tenant, key, 10)
        with pytest.raises(ApiError):
            await limits.elements(tenant, key, 1)
        with pytest.raises(ApiError):  # larger than the limit itself: refused without counting
            await limits.elements(tenant, "other" + key, 11)

    asyncio.run(scenario())


@pytest.mark.parametrize("storage", ["memory://", "redis://127.0.0.1:6379/0"])
def test_predict_counts_requests_and_elements_in_one_step(storage: str) -> None:
    """``predict`` counts the request and its elements for the key and the tenant (one script with
    Redis); the per-process pre-check refuses only what the shared limit would refuse too."""
    pytest.importorskip("limits")
    from kerasguard.policy import Serve
    from kerasguard.serve.ratelimit import RateLimits

    if storage.startswith("redis"):
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
        except Exception:
            pytest.skip("no Redis on 127.0.0.1:6379")
    import secrets

    async def scenario() -> None:
        limits = RateLimits(
            Serve(rate_limit_storage=storage, key_requests_per_second=50, key_elements_per_second=100)
        )
        key, tenant = secrets.token_hex(8), "t-" + secrets.token_hex(4)
        await limits.predict(tenant, key, 60)
        with pytest.raises(ApiError) as info:
            await limits.predict(tenant, key, 41)  # 101 elements: the key's element limit
        assert info.value.status == 429 and info.value.reason == "rate_limited_key"
        stats = await limits.limiter.get_window_stats(limits.key_requests, "key", key)
        assert stats.remaining == 48  # both predicts counted as requests
        tenant_stats = await limits.limiter.get_window_stats(
            limits.tenant_elements, "tenant-elements", tenant
        )
        assert tenant_stats.remaining == limits.tenant_elements.amount - 101
        other = secrets.token_hex(8)
        for _ in range(50):
            limits.precheck(other)
        with pytest.raises(ApiError) as info:
            limits.precheck(other)
        assert info.value.status == 429

    asyncio.run(scenario())


def test_json_bodies_parse_the_same_with_and_without_orjson() -> None:
    """The fast parser gives exactly ``json``'s values, and what it refuses ``json`` still decides
    (NaN, integers beyond 64 bits, lone surrogates), so the accepted bodies do not change."""
    import json

    pytest.importorskip("orjson")
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps({"instances": rng.normal(0, 1e3, (3, 4, 5)).tolist()}).encode(),
        json.dumps({"instances": [[1e-320, 5e-324, 1.7976931348623157e308, -0.0, 0.1, 1e999]]}).encode(),
        b'{"instances": [[NaN, Infinity, -Infinity, 1]]}',
        b'{"inputs": {"x": [1, 2]}, "signature_name": "\\ud800"}',
        b'{"instances": [[1, 2]], "instances": [[3, 4]]}',
    ]
    for body in bodies:
        fast, slow = validation.loads(body), json.loads(body)
        assert json.dumps(fast) == json.dumps(slow)  # NaN != NaN: compare the texts
    # an integer beyond 64 bits: a float for orjson, an int for json; the same float64 in the array, and
    # refused for an integer input either way (rule: dtype)
    huge = b'{"instances": [[' + b"9" * 40 + b", 1]]}"
    fast, slow = validation.loads(huge)["instances"], json.loads(huge)["instances"]
    assert np.array_equal(np.array(fast, dtype=np.float64), np.array(slow, dtype=np.float64))
    spec = TensorSpec("x", (None, 2), "int64")
    with pytest.raises(ApiError) as info:
        validation.parse("application/json", huge, [spec], validation.Checks(8, 1 << 20, {}))
    assert info.value.status == 422 and "rule: dtype" in info.value.message
    for bad in (b"{", b'{"instances": [1,]}', b"\xff", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises((ValueError, RecursionError)):
            validation.loads(bad)


def test_strip_attachment_checks_digest_and_model(tmp_path: Path) -> None:
    """``store push --detector FILE.npz``: a sealed STRIP attachment read back by the gateway is refused
    when edited after it was written or fitted for another model; a good one round-trips with its
    threshold, whatever its size (no provenance cap since attachments are sealed blobs)."""
    from kerasguard import attach
    from kerasguard.errors import ProbeError, StoreError
    from kerasguard.probe.strip import StripDetector, from_sealed

    rng = np.random.default_rng(0)
    sha = "ab" * 32

    def detector(n: int, model_sha256: str | None = sha) -> Path:
        overlay = rng.uniform(0, 1, (n, 64)).astype(np.float32)
        found = StripDetector(overlay, 0.3, 0.05, 20, 0.0, 1.0, 10, model_sha256=model_sha256)
        path = tmp_path / f"strip-{n}-{model_sha256}.npz"
        found.save(path)
        return path

    good = detector(100).read_bytes()
    assert from_sealed(good, model_sha256="sha256:" + sha, where="t").threshold == 0.3
    big = detector(200)  # 52 KB of overlays: refused by the 36 KiB provenance cap before sealing
    assert len(from_sealed(big.read_bytes(), model_sha256=sha, where="t").overlay) == 200
    assert attach.detector(big, model_sha256=sha, max_bytes=1 << 20).kind == "strip"
    with pytest.raises(ProbeError, match="another model"):
        from_sealed(good, model_sha256="cd" * 32, where="t")
    with pytest.raises(StoreError, match="another model"):  # names one model, pushed with another
        attach.detector(detector(50), model_sha256="cd" * 32, max_bytes=1 << 20)
    unbound = detector(50, None).read_bytes()  # bound to its version by the store's sealed entry
    assert from_sealed(unbound, model_sha256="cd" * 32, where="t").model_sha256 is None
    blob = bytearray(good)
    blob[-200] ^= 1  # one flipped bit (the zip's CRC refuses it; an edit with a new CRC: test_serve_strip)
    with pytest.raises(ProbeError, match="Bad CRC"):
        from_sealed(bytes(blob), model_sha256=sha, where="t")
    with pytest.raises(ProbeError):
        from_sealed(b"not a zip", model_sha256=sha, where="t")


def test_the_gateway_refuses_a_store_token_that_cannot_serve_and_says_which_role_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invoker key as the gateway's own token (the clients' key, not the gateway's): refused at start
    with the role named with its article and a hint naming the roles that work, with or without
    ``[serve] namespaces``; the roles the hint names start."""
    import base64

    from typer.testing import CliRunner

    from kerasguard.cli import app
    from kerasguard.errors import KerasGuardError
    from kerasguard.serve import process
    from kerasguard.store import MasterKey, ModelStore

    master = MasterKey.generate()
    store, admin = ModelStore.init(tmp_path / "store", master)
    with store:
        tokens = {
            role: store.create_token(admin, role, "team") for role in ("invoker", "reader", "publisher")
        }
        tokens["tenant admin"] = store.create_token(admin, "admin", "team")
        store.create_token(admin, "invoker", "other")  # a tenant the "team" tokens may not serve
    monkeypatch.setenv("KERASGUARD_MASTER_KEY", base64.b64encode(master.material).decode())
    monkeypatch.delenv("KERASGUARD_MASTER_KEY_FILE", raising=False)
    monkeypatch.delenv(process.CONFIG_ENV, raising=False)
    plain = tmp_path / "plain.toml"
    plain.write_text("[serve]\nconsole = false\n")
    named = tmp_path / "named.toml"
    named.write_text('[serve]\nconsole = false\nnamespaces = ["team"]\n')

    import kerasguard.serve.app

    monkeypatch.setattr(kerasguard.serve.app, "create_app", lambda access, policy: access)

    def build(token: str, policy: Path) -> None:
        config = process.ServeConfig(store=str(tmp_path / "store"), policy=str(policy))
        process.build_app(config, token).store.close()  # the StoreAccess, as create_app got it

    for policy in (plain, named):
        with pytest.raises(KerasGuardError) as info:
            build(tokens["invoker"], policy)
        assert "access denied: an invoker token for namespace 'team'" in info.value.message, (
            info.value.message
        )
        assert info.value.hint == process.ROLE_HINT
        assert "an admin token" in info.value.hint and "a reader or publisher token" in info.value.hint
    with pytest.raises(KerasGuardError, match="a reader token for namespace 'team' may not token-list"):
        build(tokens["reader"], plain)  # which tenants to serve: needs token-list, an admin's
    for role in ("reader", "publisher", "tenant admin"):
        build(tokens[role], named)
    build(tokens["tenant admin"], plain)  # tenants: the namespaces of its invoker keys, its own
    build(admin, plain)
    # as the user ran it
    env = {"KERASGUARD_STORE_TOKEN": tokens["invoker"], "KERASGUARD_STORE": str(tmp_path / "store")}
    result = CliRunner().invoke(app, ["serve", "--policy", str(plain), "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "an invoker token" in result.stderr and "a invoker" not in result.stderr
    assert "hint: the gateway's store token lists, shows and pulls" in result.stderr
