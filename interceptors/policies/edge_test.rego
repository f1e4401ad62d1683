package intelgraph.edge_test

import rego.v1

import data.intelgraph.edge

same := {"cache_key": {"tenant": "a", "scope_hash": "s"}, "request": {"tenant": "a", "scope_hash": "s"}}

other_tenant := {"cache_key": {"tenant": "a", "scope_hash": "s"}, "request": {"tenant": "b", "scope_hash": "s"}}

other_scope := {"cache_key": {"tenant": "a", "scope_hash": "s"}, "request": {"tenant": "a", "scope_hash": "t"}}

test_an_entry_of_another_tenant_is_a_leak if {
	edge.suspicious_leak with input as {"cache_key": {"tenant": "a"}, "request": {"tenant": "b"}}
}

test_an_entry_of_the_same_tenant_is_not if {
	not edge.suspicious_leak with input as {"cache_key": {"tenant": "a"}, "request": {"tenant": "a"}}
}

test_a_matching_entry_may_be_served if {
	not edge.tenant_mismatch(same)
	not edge.scope_mismatch(same)
	edge.leak_reasons(same) == set()
	edge.judged(same).suspicious == false
}

test_another_tenants_entry_is_refused if {
	edge.tenant_mismatch(other_tenant)
	edge.leak_reasons(other_tenant) == {"tenant mismatch"}
	edge.judged(other_tenant).suspicious == true
}

test_another_scopes_entry_is_refused if {
	edge.scope_mismatch(other_scope)
	edge.leak_reasons(other_scope) == {"scope mismatch"}
	edge.judged(other_scope).suspicious == true
}
