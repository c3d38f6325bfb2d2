"""Generated from proto/tokend.proto by protoc at build or install time
(tokend_pb2.py); nothing generated is committed."""
