"""HTTP layer: FastAPI app factory, request parsing, error mapping, the Lambda handler."""
