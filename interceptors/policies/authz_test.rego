package intelgraph.authz_test

import rego.v1

import data.intelgraph.authz

tenant := "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"

other_tenant := "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"

call(permission, scopes, resource) := {
	"subject": "alice",
	"tenant": tenant,
	"scopes": scopes,
	"jit": false,
	"method": {"service": "intelgraph.catalog.v1.CatalogService", "name": "GetEntity", "permission": permission},
	"resource": resource,
	"now": 1780000000,
}

test_a_scope_grants_its_permission if {
	authz.granted(call("catalog.read", ["catalog.read"], {}))
	authz.denials(call("catalog.read", ["billing.read", "catalog.read"], {})) == set()
}

test_another_scope_does_not if {
	not authz.granted(call("catalog.write", ["catalog.read"], {}))
	authz.scope_missing(call("catalog.write", ["catalog.read"], {}))
	authz.denials(call("catalog.write", ["catalog.read"], {})) == {"scope_missing"}
}

test_no_scopes_no_access if {
	authz.denials(call("billing.read", [], {})) == {"scope_missing"}
}

test_authenticated_rpcs_need_no_scope if {
	authz.denials(call("", [], {})) == set()
}

test_admin_write_needs_the_admin_scope if {
	authz.admin_permission(call("admin.write", [], {}))
	not authz.admin_permission(call("catalog.write", [], {}))
	authz.denials(call("admin.write", ["admin.write"], {})) == set()
}

test_admin_write_is_not_granted_by_other_scopes if {
	authz.admin_scope_required(call("admin.write", ["catalog.write", "billing.write"], {}))
	authz.denials(call("admin.write", ["catalog.write", "billing.write"], {})) == {"admin_scope_required"}
}

test_another_admin_scope_is_not_enough if {
	authz.denials(call("admin.write", ["admin.read"], {})) == {"admin_scope_required"}
}

test_the_resource_tenant_must_be_the_callers if {
	authz.denials(call("catalog.read", ["catalog.read"], {"tenant": tenant})) == set()
	authz.tenant_mismatch(call("catalog.read", ["catalog.read"], {"tenant": other_tenant}))
	authz.denials(call("catalog.read", ["catalog.read"], {"tenant": other_tenant})) == {"tenant_mismatch"}
}

test_every_failing_check_is_reported if {
	authz.denials(call("catalog.read", [], {"tenant": other_tenant})) == {"scope_missing", "tenant_mismatch"}
}

test_operators_may_name_another_tenant if {
	authz.cross_tenant_allowed(call("platform.admin", [], {}))
	authz.denials(call("platform.admin", ["platform.admin"], {"tenant": other_tenant})) == set()
	authz.denials(call("platform.admin", [], {"tenant": other_tenant})) == {"scope_missing"}
}

test_the_verdict_carries_allow_and_every_reason if {
	authz.verdict(call("rag.read", [], {"tenant": other_tenant})) == {"allow": false, "deny": {"scope_missing", "tenant_mismatch"}}
	authz.verdict(call("rag.read", ["rag.read"], {})) == {"allow": true, "deny": set()}
}
