"""HTTP plumbing shared by every domain: errors, declared routes, middleware, logs, metrics."""
