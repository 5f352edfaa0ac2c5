"""TensorFlow SavedModel: the reader, the protobuf wire format (protowire) and text format (pbtext)."""
