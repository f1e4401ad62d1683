"""The platform's servers: a package per service, and the shared runtime (app, db, config)."""
