"""FastStream routers: parse, call the handler, reply or publish. Thin by design."""
