"""Pickle streams walked by opcode (ops); nothing is ever unpickled."""
