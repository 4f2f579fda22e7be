"""Generated Python stubs of the camera-facing gRPC API (proto/vialguard/v1/).

Do not edit the ``inspection_pb2*`` files: run ``scripts/gen_proto.sh`` after
changing the .proto; tests/unit/test_proto_generated.py checks they match.
"""
