"""Checks template.yaml as CloudFormation will receive it, offline, in a few seconds.

Why: `sam deploy` uploads template.yaml with its `Transform: AWS::Serverless-2016-10-31`, and
CloudFormation expands it with SAM's translator (the `samtranslator` package, the very one inside
the SAM CLI venv) before creating anything. Linting the SAM template alone (`cfn-lint
template.yaml`, `sam validate --lint`) does not see what the translator adds: the functions'
generated roles and the dependencies they carry. A circular dependency between SchedulerRole,
FireFunction and FireFunctionRole passed both and would only have failed at deploy time.

What it does:
  0. Expands the template with `samtranslator.translator.transform.transform`, as CloudFormation
     does: parameter values from their defaults (placeholders for NoEcho or default-less ones),
     pseudo parameters for us-east-1, every `CodeUri` replaced by an `s3://` placeholder (what
     `sam deploy` uploads), and a managed-policy loader that answers offline (the map below).
     The result goes to target/sam/expanded.json.
  a. Runs cfn-lint (as a library) on the expanded template: every error or warning is a finding
     (informational rules are not; no rule is ignored, see IGNORED_CFN_LINT_RULES).
  b. Lints every IAM policy document of the expanded template (roles' inline policies and trust
     policies, AWS::IAM::Policy / RolePolicy / ManagedPolicy, resource policies such as
     SQS QueuePolicy; any PolicyDocument / AssumeRolePolicyDocument / KeyPolicy property) with
     parliament, after replacing Ref / Fn::GetAtt / Fn::Sub / Fn::Join by realistic placeholder
     names and ARNs (class Placeholders). Unknown actions, resources, condition keys, resource
     types that match no action: all findings, at any severity. Beside parliament, a stricter
     pairing check (ACTION_RESOURCE_PAIRING, see mismatched_pairs()): in an Allow statement every
     action must apply to every resource, so no grant is wider than the calls it is for. Only the
     exact findings in SUPPRESSED_POLICY_FINDINGS are let through, each with its reason.
  c. Checks that every Ref, Fn::GetAtt, `${...}` of Fn::Sub (and DependsOn) of the expanded
     template names a parameter, a resource or a pseudo parameter (GetAtt and DependsOn: a
     resource); each dangling one is a finding.
  d. Prints a summary; exits 1 on any finding (2 when the template cannot even be expanded).

Run it with the project's venv (which has aws-sam-cli, cfn-lint and parliament):
    .venv/bin/python tests/sam/check_template.py [TEMPLATE]
TEMPLATE defaults to template.yaml at the repository root.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXPANDED = REPO / "target" / "sam" / "expanded.json"

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
STACK = "etp"

# The translator resolves pseudo parameters from a boto3 session's region; keep it offline.
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources (deprecated)
        import parliament
        from cfnlint.api import ManualArgs, lint_file
        from samtranslator.translator.transform import transform
        from samtranslator.yaml_helper import yaml_parse
except ImportError as e:  # pragma: no cover - environment problem, not a template problem
    sys.exit(
        f"check_template: {e}. Run with the project venv: .venv/bin/python {sys.argv[0]} "
        "(after `.venv/bin/pip install -r requirements-dev.txt`)"
    )

# Values for parameters without a usable default (NoEcho ones never get one).
PLACEHOLDER_PARAMETERS = {"ApiToken": "placeholder-api-token-0123456789"}

# AWS managed policies the template names without an ARN (SAM looks names up through IAM's
# ListPolicies, which needs an account). The template names none today; add any it comes to use.
MANAGED_POLICIES: dict[str, str] = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
}

# cfn-lint rules ignored on the expanded template, each with why. Informational (I*) rules are
# never counted.
IGNORED_CFN_LINT_RULES: dict[str, str] = {}

# Policy findings (parliament's, or ACTION_RESOURCE_PAIRING) that are false positives:
# (logical id, policy name, issue) -> reason.
SUPPRESSED_POLICY_FINDINGS: dict[tuple[str, str, str], str] = {
    (
        "FireFunctionRole",
        "FireFunctionEventInvokeConfigOnFailureSQSPolicy",
        "NO_VERSION",
    ): "SAM generates this policy (EventInvokeConfig OnFailure SQS destination) without a "
    "Version; it uses no policy variables, so the 2008-10-17 default changes nothing, and the "
    "template cannot set it.",
}

PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::NotificationARNs": [],
    "AWS::NoValue": None,
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/"
    "00000000-0000-0000-0000-000000000000",
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}


class ManagedPolicyMap:
    """What SAM's ManagedPolicyLoader returns, without calling IAM."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


# ---------------------------------------------------------------------------------- expansion


def parameter_values(template: dict) -> dict[str, Any]:
    values = {}
    for name, p in (template.get("Parameters") or {}).items():
        if name in PLACEHOLDER_PARAMETERS:
            values[name] = PLACEHOLDER_PARAMETERS[name]
        elif "Default" in p:
            values[name] = p["Default"]
        else:
            values[name] = f"placeholder-{name}"
    return values


def expand(template_path: Path) -> tuple[dict, dict[str, Any]]:
    sam = yaml_parse(template_path.read_text())
    for logical, res in (sam.get("Resources") or {}).items():
        props = res.get("Properties") or {}
        if res.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            for key in ("CodeUri", "ContentUri"):
                if key in props:
                    props[key] = f"s3://placeholder-artifacts/{STACK}/{logical}.zip"
    values = parameter_values(sam)
    expanded = transform(copy.deepcopy(sam), dict(values), ManagedPolicyMap())
    return expanded, values


# ---------------------------------------------------------------------------------- a. cfn-lint


def cfn_lint(path: Path) -> list[str]:
    findings = []
    for m in lint_file(path, ManualArgs(regions=[REGION])):
        rule = m.rule.id
        if rule.startswith("I") or rule in IGNORED_CFN_LINT_RULES:
            continue
        findings.append(f"{rule} {m.message} ({path.name}:{m.linenumber})")
    return findings


# ---------------------------------------------------------------------- c. dangling references

SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def sub_names(text: str) -> list[str]:
    """The names a Fn::Sub string refers to (`${!Literal}` is an escape, not a reference)."""
    return [m.strip() for m in SUB_VAR.findall(text) if not m.startswith("!")]


def dangling_references(template: dict) -> list[str]:
    params = set((template.get("Parameters") or {}).keys())
    resources = set((template.get("Resources") or {}).keys())
    refable = params | resources | set(PSEUDO)
    findings: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref" and isinstance(value, str):
                if value not in refable:
                    findings.append(f"{where}: Ref {value} names no parameter or resource")
                return
            if key == "Fn::GetAtt":
                target = value.split(".", 1)[0] if isinstance(value, str) else value[0]
                if isinstance(target, str) and target not in resources:
                    findings.append(f"{where}: Fn::GetAtt {target} names no resource")
                if isinstance(value, list):
                    walk(value[1:], f"{where}.Fn::GetAtt")
                return
            if key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                for name in sub_names(text):
                    if "." in name:
                        target = name.split(".", 1)[0]
                        if target not in resources:
                            findings.append(f"{where}: Fn::Sub ${{{name}}} names no resource")
                    elif name not in refable and name not in variables:
                        findings.append(
                            f"{where}: Fn::Sub ${{{name}}} names no parameter, resource or variable"
                        )
                walk(variables, f"{where}.Fn::Sub")
                return
        for key, value in node.items():
            walk(value, f"{where}.{key}")

    for section in ("Conditions", "Resources", "Outputs", "Rules"):
        walk(template.get(section) or {}, section)
    for logical, res in (template.get("Resources") or {}).items():
        depends = res.get("DependsOn", [])
        for name in [depends] if isinstance(depends, str) else depends:
            if name not in resources:
                findings.append(f"Resources.{logical}.DependsOn: {name} names no resource")
    return findings


# ------------------------------------------------------------------------- b. IAM policy lint


class Unresolvable(Exception):
    pass


# Properties that name a resource, when the template sets them.
NAME_PROPERTIES = (
    "TableName",
    "QueueName",
    "RoleName",
    "FunctionName",
    "LogGroupName",
    "TopicName",
    "BucketName",
    "ManagedPolicyName",
)


class Placeholders:
    """Realistic physical names, ids and ARNs for the template's resources (us-east-1)."""

    def __init__(self, template: dict, values: dict[str, Any]):
        self.resources = template.get("Resources") or {}
        self.values = {**PSEUDO, **values}

    def physical_name(self, logical: str) -> str:
        props = self.resources[logical].get("Properties") or {}
        for key in NAME_PROPERTIES:
            if key in props:
                name = self.resolve(props[key])
                if isinstance(name, str):
                    return name
        if self.resources[logical]["Type"] == "AWS::Scheduler::ScheduleGroup" and "Name" in props:
            return self.resolve(props["Name"])
        # What CloudFormation generates: stack name, logical id, random suffix.
        return f"{STACK}-{logical}-EXAMPLE1234AB"

    def ref(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name not in self.resources:
            raise Unresolvable(f"Ref {name}")
        kind = self.resources[name]["Type"]
        pn = self.physical_name(name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{pn}"
        if kind in ("AWS::SNS::Topic",):
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{pn}"
        if kind == "AWS::SecretsManager::Secret":
            # Ref is the ARN; Secrets Manager appends six random characters to the name.
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{pn}-AbCdEf"
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT}:policy/{pn}"
        if kind in ("AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"):
            return "a1b2c3d4e5"
        return pn  # most resources' Ref is their name

    def get_att(self, logical: str, attr: str) -> str:
        if logical not in self.resources:
            raise Unresolvable(f"Fn::GetAtt {logical}.{attr}")
        kind = self.resources[logical]["Type"]
        pn = self.physical_name(logical)
        arns = {
            ("AWS::DynamoDB::Table", "Arn"): f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{pn}",
            ("AWS::DynamoDB::Table", "StreamArn"): f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:"
            f"table/{pn}/stream/2026-01-01T00:00:00.000",
            ("AWS::Scheduler::ScheduleGroup", "Arn"): f"arn:aws:scheduler:{REGION}:{ACCOUNT}:"
            f"schedule-group/{pn}",
            ("AWS::SQS::Queue", "Arn"): f"arn:aws:sqs:{REGION}:{ACCOUNT}:{pn}",
            ("AWS::SQS::Queue", "QueueName"): pn,
            ("AWS::SQS::Queue", "QueueUrl"): f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{pn}",
            ("AWS::IAM::Role", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/{pn}",
            ("AWS::IAM::Role", "RoleId"): "AROAEXAMPLEEXAMPLE123",
            ("AWS::Lambda::Function", "Arn"): f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{pn}",
            ("AWS::Logs::LogGroup", "Arn"): f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{pn}:*",
            ("AWS::SNS::Topic", "TopicArn"): f"arn:aws:sns:{REGION}:{ACCOUNT}:{pn}",
            ("AWS::S3::Bucket", "Arn"): f"arn:aws:s3:::{pn}",
        }
        if (kind, attr) not in arns:
            raise Unresolvable(
                f"no placeholder for Fn::GetAtt {logical}.{attr} ({kind}); add one to get_att()"
            )
        return arns[(kind, attr)]

    def sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            name = inner.strip()
            if name in variables:
                value = self.resolve(variables[name])
            elif "." in name and name.split(".", 1)[0] in self.resources:
                value = self.get_att(*name.split(".", 1))
            else:
                value = self.ref(name)
            if not isinstance(value, str):
                value = str(value)
            return value

        return SUB_VAR.sub(one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical, attr = value.split(".", 1) if isinstance(value, str) else value
                return self.get_att(logical, attr)
            if key == "Fn::Sub":
                if isinstance(value, str):
                    return self.sub(value, {})
                return self.sub(value[0], value[1])
            if key == "Fn::Join":
                sep, parts = value
                return sep.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = value
                return self.resolve(text).split(sep)
            if key.startswith("Fn::") or key == "Condition":
                raise Unresolvable(f"{key} is not substituted; add it to resolve()")
        return {k: self.resolve(v) for k, v in node.items()}


def _privileges() -> dict[str, list[dict]]:
    """'service:Action' (lower case) -> its resource types, from parliament's IAM reference."""
    table: dict[str, list[dict]] = {}
    for service in parliament.iam_definition:
        arns = {r["resource"]: r["arn"] for r in service["resources"]}
        for p in service["privileges"]:
            types = [
                {"type": t["resource_type"].rstrip("*"), "arn": arns.get(t["resource_type"].rstrip("*"))}
                for t in p["resource_types"]
                if t["resource_type"]
            ]
            table.setdefault(f"{service['prefix']}:{p['privilege']}".lower(), []).extend(types)
    return table


def _arn_regex(arn_format: str) -> re.Pattern:
    # Each ${Variable} is one name: no '/' or ':' in it (parliament's own matching lets
    # ${TableName} run across '/', so it accepts dynamodb:GetItem on table/T/index/*).
    parts = re.split(r"\$\{[^}]+\}", arn_format)
    return re.compile("[^/:]+".join(re.escape(p) for p in parts) + "$")


def mismatched_pairs(policy: dict, privileges: dict[str, list[dict]]) -> list[str]:
    """Strict pairing, our own check beside parliament's: in an Allow statement, every (literal)
    action must apply to every resource. parliament only asks that each action match *some*
    resource of its statement, so a statement granting GetItem, Query on a table and its
    indexes passes there, though GetItem on an index means nothing. Wildcard ('*' in the ID)
    resources are tried with each '*' read as one name."""
    findings = []
    for i, stmt in enumerate(policy.get("Statement", [])):
        if stmt.get("Effect") != "Allow" or "Action" not in stmt or "Resource" not in stmt:
            continue
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        label = stmt.get("Sid") or f"Statement[{i}]"
        for action in actions:
            if "*" in action or "?" in action or action.lower() not in privileges:
                continue  # wildcards are not paired; unknown actions are parliament's finding
            types = [t for t in privileges[action.lower()] if t["arn"]]
            for resource in resources:
                if resource == "*":
                    continue  # parliament reports needless Resource "*" (RESOURCE_STAR)
                if not types:
                    findings.append(f"{label}: {action} takes no resource, but is granted on {resource}")
                    continue
                concrete = resource.replace("*", "x").replace("?", "x")
                if not any(_arn_regex(t["arn"]).match(concrete) for t in types):
                    kinds = ", ".join(t["type"] for t in types)
                    findings.append(
                        f"{label}: {action} does not apply to {resource} (it takes: {kinds})"
                    )
    return findings


POLICY_KEYS = ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy")


def policy_documents(template: dict) -> list[tuple[str, str, str, Any]]:
    """(logical id, resource type, policy label, document) for every policy in the template."""
    found = []

    def walk(node: Any, logical: str, kind: str, label: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                # Role.Policies / User.Policies items are labelled by their PolicyName.
                name = item.get("PolicyName") if isinstance(item, dict) else None
                walk(item, logical, kind, name if isinstance(name, str) else f"{label}[{i}]")
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in POLICY_KEYS:
                    if key == "PolicyDocument" and isinstance(node.get("PolicyName"), str):
                        doc_label = node["PolicyName"]
                    elif key == "PolicyDocument" and label.endswith("]"):
                        doc_label = label
                    else:
                        doc_label = key
                    found.append((logical, kind, doc_label, value))
                else:
                    walk(value, logical, kind, key)

    for logical, res in (template.get("Resources") or {}).items():
        walk(res.get("Properties") or {}, logical, res.get("Type", "?"), "Properties")
    return found


def lint_policies(template: dict, values: dict[str, Any]) -> tuple[list[str], int, list[str]]:
    ph = Placeholders(template, values)
    findings: list[str] = []
    suppressed: list[str] = []
    docs = policy_documents(template)
    privileges = _privileges()
    for logical, kind, label, doc in docs:
        where = f"{logical} ({kind}) {label}"
        try:
            resolved = ph.resolve(doc)
        except Unresolvable as e:
            findings.append(f"{where}: cannot substitute placeholders: {e}")
            continue
        if isinstance(resolved, str):  # e.g. AWS::Logs::ResourcePolicy takes a JSON string
            resolved = json.loads(resolved)
        if label == "AssumeRolePolicyDocument":
            # A trust policy governs the role itself and has no Resource element; parliament
            # would stop at "neither Resource nor NotResource" before checking actions and
            # condition keys, so each statement is checked against the role's own ARN.
            role_arn = ph.get_att(logical, "Arn")
            for stmt in resolved.get("Statement", []):
                if "Resource" not in stmt and "NotResource" not in stmt:
                    stmt["Resource"] = role_arn
        for problem in mismatched_pairs(resolved, privileges):
            text = f"{where}: ACTION_RESOURCE_PAIRING {problem}"
            key = (logical, label, "ACTION_RESOURCE_PAIRING")
            if key in SUPPRESSED_POLICY_FINDINGS:
                suppressed.append(f"{text} -- suppressed: {SUPPRESSED_POLICY_FINDINGS[key]}")
            else:
                findings.append(text)
        policy = parliament.analyze_policy_string(json.dumps(resolved, indent=2))
        for f in policy.findings:
            f = parliament.enhance_finding(f)
            key = (logical, label, f.issue)
            text = f"{where}: {f.issue} ({f.severity}) {f.title}: {f.detail}"
            if key in SUPPRESSED_POLICY_FINDINGS:
                suppressed.append(f"{text} -- suppressed: {SUPPRESSED_POLICY_FINDINGS[key]}")
            else:
                findings.append(text)
    # parliament reports some findings once per matching entry of its IAM reference (iam has two).
    return list(dict.fromkeys(findings)), len(docs), list(dict.fromkeys(suppressed))


# --------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__)
        return 0 if len(argv) == 2 else 2
    template_path = Path(argv[1]) if len(argv) == 2 else REPO / "template.yaml"
    started = time.monotonic()
    print(f"check_template: {template_path}")
    try:
        expanded, values = expand(template_path)
    except Exception as e:  # the translator's own errors name the problem well
        print(f"FAIL: SAM translator could not expand the template: {e}")
        return 2
    EXPANDED.parent.mkdir(parents=True, exist_ok=True)
    EXPANDED.write_text(json.dumps(expanded, indent=2) + "\n")
    n_resources = len(expanded.get("Resources") or {})
    print(f"  expanded by samtranslator: {n_resources} resources -> {EXPANDED.relative_to(REPO)}")

    sections = [
        ("cfn-lint on the expanded template", cfn_lint(EXPANDED), []),
    ]
    policy_findings, n_docs, suppressed = lint_policies(expanded, values)
    sections.append(
        (f"IAM policy lint (parliament + pairing) on {n_docs} documents", policy_findings, suppressed)
    )
    sections.append(("Ref / GetAtt / Sub / DependsOn targets", dangling_references(expanded), []))

    total = 0
    for title, findings, notes in sections:
        status = "ok" if not findings else f"{len(findings)} finding(s)"
        print(f"  [{'PASS' if not findings else 'FAIL'}] {title}: {status}")
        for f in findings:
            print(f"      - {f}")
        for n in notes:
            print(f"      (suppressed) {n}")
        total += len(findings)
    elapsed = time.monotonic() - started
    if total:
        print(f"FAIL: {total} finding(s) in {elapsed:.1f}s")
        return 1
    print(f"PASS: no findings in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
