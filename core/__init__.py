"""The neutral core: what servers, interceptors and the SDK all build on.

It depends on the generated contracts (`gen/`) and on libraries, never on
`servers`, `interceptors` or the SDK (import-linter checks it):

- `core.errors`: domain errors, each carrying its status and reason.
- `core.pagination`: the one keyset page-token codec.
- `core.times`: protobuf Timestamp <-> aware datetime.
- `core.descriptors`: what the contracts' options say about an RPC.
- `core.interfaces`: the narrow `Protocol`s services meet through.
"""
