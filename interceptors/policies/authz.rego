# Authorization of every RPC: the permission its contract declares, the
# caller's scopes, and tenancy.
#
# input: {subject, tenant, scopes, jit, method: {service, name, permission},
#         resource: {tenant?}, now}
# `method.permission` is "" for RPCs any authenticated caller may use.
#
# The checks are functions of the call document, so the unit tests can call
# them directly (rego-cpp mis-evaluates builtins under `with input as`).
package intelgraph.authz

import rego.v1

# The entrypoint the authorization interceptor queries.
# METADATA
# entrypoint: true
decision := verdict(input)

verdict(call) := {"allow": count(denials(call)) == 0, "deny": denials(call)}

# Every reason the call is refused; empty when it may proceed.
denials(call) := (({reason | reason := "admin_scope_required"; admin_scope_required(call)} | {reason | reason := "scope_missing"; scope_missing(call)}) | {reason | reason := "tenant_mismatch"; tenant_mismatch(call)})

# Admin permissions (admin.write, ...) are granted only by admin.* scopes.
admin_permission(call) if startswith(call.method.permission, "admin.")

# A scope grants the permission of the same name; "" needs none.
granted(call) if call.method.permission == ""

granted(call) if {
	not admin_permission(call)
	some scope in call.scopes
	scope == call.method.permission
}

granted(call) if {
	admin_permission(call)
	some scope in call.scopes
	startswith(scope, "admin.")
	scope == call.method.permission
}

admin_scope_required(call) if {
	admin_permission(call)
	not granted(call)
}

scope_missing(call) if {
	not admin_permission(call)
	not granted(call)
}

# Operators act across tenants: only platform.admin may name another tenant.
cross_tenant_allowed(call) if call.method.permission == "platform.admin"

tenant_mismatch(call) if {
	call.resource.tenant
	not call.resource.tenant == call.tenant
	not cross_tenant_allowed(call)
}
