"""AWS Lambda's errors, mapped in tables: which codes mean "not run, try again",
and what to tell the user for each."""

from __future__ import annotations

# Lambda errors that mean the function did not run and a later try may work.
RETRYABLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException",
                              "EC2ThrottledException", "ResourceNotReadyException",
                              "ResourceConflictException", "SubnetIPAddressLimitReachedException"})


#: what to do about an error code, in words
HINTS = {
    **dict.fromkeys(("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                     "InvalidSignatureException"),
                    "check the AWS identity's permissions (lambda:CreateFunction, UpdateFunctionCode, "
                    "GetFunction, TagResource, InvokeFunction, iam:PassRole) and credentials"),
    "CodeStorageExceededException": "remove unused Lambda functions (`straightline gc`) or old versions",
}


class Retryable(Exception):
    """A call Lambda refused without running it (throttled, not ready)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def client_error_code(exc) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code, status


def role_not_ready(exc: BaseException) -> bool:
    """IAM has not yet propagated a new role to Lambda (it says it cannot assume it)."""
    code, _ = client_error_code(exc)
    text = str(exc).lower()
    return code == "InvalidParameterValueException" and "role" in text and "assume" in text


def hint_for(code: str) -> str | None:
    return HINTS.get(code)
