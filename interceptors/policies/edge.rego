# The edge cache's leak detector: a cache hit whose entry belongs to another
# tenant than the request is suspicious and must not be served.
#
# input: {cache_key: {tenant, scope_hash}, request: {tenant, scope_hash}}
package intelgraph.edge

import rego.v1

default suspicious_leak := false

suspicious_leak if not input.cache_key.tenant == input.request.tenant
