# Access requests: which scopes may be requested, for how long, with what
# justification, and who reviews them. The rules are data
# (access_policy.json); this module only reads it.
#
# request input: {subject, tenant, scopes, requested: [scope], reason}
# review input:  {subject, scopes, requester, requested: [scope]}
package intelgraph.access

import rego.v1

# METADATA
# entrypoint: true
request_decision := request_verdict(input)

# METADATA
# entrypoint: true
review_decision := review_verdict(input)

request_verdict(req) := {
	"allow": count(request_denials(req)) == 0,
	"deny": request_denials(req),
	"max_duration_s": max_duration_s(req.requested),
	"approvals_required": approvals_required(req.requested),
}

review_verdict(rev) := {"allow": count(review_denials(rev)) == 0, "deny": review_denials(rev)}

request_denials(req) := ({reason | reason := "scope_not_requestable"; some scope in req.requested; not requestable(scope)} | {reason | reason := "reason_required"; reason_missing(req)}) | {reason | reason := "no_scope_requested"; count(req.requested) == 0}

review_denials(rev) := {reason | reason := "self_approval"; rev.subject == rev.requester} | {reason | reason := "not_an_approver"; some scope in rev.requested; not approver_of(rev.subject, scope)}

rule(scope) := data.access_policy.scopes[scope]

requestable(scope) if rule(scope).requestable == true

reason_missing(req) if {
	some scope in req.requested
	rule(scope).reason_required == true
	req.reason == ""
}

# The shortest maximum among the requested scopes; 0 when none is requestable.
# (Written with `<` because rego-cpp's min/max/sort order numbers as text.)
max_duration_s(requested) := duration if {
	some scope in requested
	requestable(scope)
	duration := rule(scope).max_duration_s
	not shorter_than(requested, duration)
} else := 0

shorter_than(requested, duration) if {
	some scope in requested
	requestable(scope)
	rule(scope).max_duration_s < duration
}

# The most approvals any requested scope requires; at least one.
approvals_required(requested) := approvals if {
	some scope in requested
	requestable(scope)
	approvals := rule(scope).approvals
	not stricter_than(requested, approvals)
} else := 1

stricter_than(requested, approvals) if {
	some scope in requested
	requestable(scope)
	rule(scope).approvals > approvals
}

# An empty approver list means every admin.write holder of the tenant.
approver_of(_, scope) if count(object.get(rule(scope), "approvers", [])) == 0

approver_of(subject, scope) if {
	some approver in rule(scope).approvers
	approver == subject
}
