package intelgraph.edge_test

import rego.v1

import data.intelgraph.edge

test_an_entry_of_another_tenant_is_a_leak if {
	edge.suspicious_leak with input as {"cache_key": {"tenant": "a"}, "request": {"tenant": "b"}}
}

test_an_entry_of_the_same_tenant_is_not if {
	not edge.suspicious_leak with input as {"cache_key": {"tenant": "a"}, "request": {"tenant": "a"}}
}
