# The edge cache's leak detector: a cache hit whose entry was stored for another
# tenant (the seed's rule) or another authorization scope than the request's
# is suspicious and must not be served.
#
# input: {cache_key: {tenant, scope_hash}, request: {tenant, scope_hash}}
#
# The checks are functions of the hit document, so the unit tests can call
# them directly (rego-cpp mis-evaluates builtins under `with input as`).
package intelgraph.edge

import rego.v1

# METADATA
# entrypoint: true
default suspicious_leak := false

# The seed's rule. (Written out: rego-cpp fails to evaluate a rule that passes
# `input` to a function when a test sets it `with input as`.)
suspicious_leak if not input.cache_key.tenant == input.request.tenant

# The entrypoint the cache queries.
# METADATA
# entrypoint: true
leak_verdict := judged(input)

judged(hit) := {"suspicious": count(leak_reasons(hit)) > 0, "reasons": leak_reasons(hit)}

# Every reason the hit must not be served; empty when it may.
leak_reasons(hit) := {reason | reason := "tenant mismatch"; tenant_mismatch(hit)} | {reason | reason := "scope mismatch"; scope_mismatch(hit)}

tenant_mismatch(hit) if not hit.cache_key.tenant == hit.request.tenant

scope_mismatch(hit) if not hit.cache_key.scope_hash == hit.request.scope_hash
