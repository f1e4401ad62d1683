package intelgraph.access_test

import rego.v1

import data.intelgraph.access

request(requested, reason) := {
	"subject": "alice",
	"tenant": "t",
	"scopes": ["catalog.read"],
	"requested": requested,
	"reason": reason,
}

review(subject, requested) := {"subject": subject, "scopes": ["admin.write"], "requester": "alice", "requested": requested}

test_a_listed_scope_is_requestable if {
	access.requestable("catalog.read")
	access.request_denials(request(["catalog.read"], "")) == set()
}

test_unlisted_and_admin_scopes_are_not if {
	not access.requestable("admin.write")
	not access.requestable("made.up")
	access.request_denials(request(["catalog.read", "admin.write"], "why")) == {"scope_not_requestable"}
}

test_an_empty_request_is_refused if {
	access.request_denials(request([], "")) == {"no_scope_requested"}
}

test_some_scopes_need_a_reason if {
	access.reason_missing(request(["audit.read"], ""))
	not access.reason_missing(request(["audit.read"], "incident 42"))
	access.request_denials(request(["catalog.read", "audit.read"], "")) == {"reason_required"}
}

test_the_shortest_maximum_wins if {
	access.max_duration_s(["catalog.read"]) == 28800
	access.max_duration_s(["catalog.read", "audit.read"]) == 3600
	access.max_duration_s(["made.up"]) == 0
}

test_ties_and_orders_of_magnitude_compare_as_numbers if {
	access.shorter_than(["audit.read"], 28800)
	not access.shorter_than(["catalog.read"], 28800)
	access.stricter_than(["billing.write"], 1)
	not access.stricter_than(["catalog.read"], 1)
	access.max_duration_s(["catalog.read", "rag.read"]) == 28800
}

test_the_strictest_threshold_wins if {
	access.approvals_required(["catalog.read"]) == 1
	access.approvals_required(["catalog.read", "billing.write"]) == 2
	access.approvals_required([]) == 1
}

test_the_request_verdict_carries_limits if {
	access.request_verdict(request(["billing.write"], "month end")) == {
		"allow": true,
		"deny": set(),
		"max_duration_s": 3600,
		"approvals_required": 2,
	}
	access.rule("billing.write").approvals == 2
}

test_requesters_never_review_their_own if {
	access.review_denials(review("alice", ["catalog.read"])) == {"self_approval"}
	access.review_verdict(review("bob", ["catalog.read"])) == {"allow": true, "deny": set()}
}

test_listed_approvers_only if {
	access.approver_of("bob", "catalog.read")
	access.review_denials(review("bob", ["catalog.read"])) == set()
	not access.approver_of("bob", "named.approvers") with data.access_policy.scopes as {"named.approvers": {"requestable": true, "approvers": ["carol"]}}
	access.approver_of("carol", "named.approvers") with data.access_policy.scopes as {"named.approvers": {"requestable": true, "approvers": ["carol"]}}
	access.review_denials(review("bob", ["named.approvers"])) == {"not_an_approver"} with data.access_policy.scopes as {"named.approvers": {"requestable": true, "approvers": ["carol"]}}
}
