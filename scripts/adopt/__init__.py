"""Adopting resources that exist already (the hand-deployed production) into a stack.

For every resource the program declares (the offline plan, :func:`scripts.plan.evaluate_stack`)
look it up by its physical name through Google's official clients, and write Pulumi's bulk
import file (``pulumi import --file``) for those that exist::

    plan = evaluate_stack("prod")
    with GoogleLookups(resolve_credentials()) as google:
        report = plan_adoption(plan.resources, google.lookups(), stack="prod")
    json.dump(import_file(report), fh)

Every resource lands in exactly one list: ``to_import`` (exists), ``to_create`` (absent, or
nothing to adopt) or ``unchecked`` (with the reason: no credentials, API disabled, permission
denied, type not supported). Modules: ``_ids`` (pulumi-gcp's import id per type),
``_report`` (the decisions and the import file), ``_google`` (the lookups).
"""

from ._google import (
    CALL_TIMEOUT_S,
    CREDENTIALS_TIMEOUT_S,
    NO_CREDENTIALS,
    Credentials,
    GoogleLookups,
    resolve_credentials,
)
from ._ids import IMPORT_IDS, UNSUPPORTED, import_id
from ._report import (
    NOT_IMPORTABLE,
    AdoptionReport,
    Check,
    Decision,
    Lookup,
    Status,
    absent,
    existing_among,
    exists,
    import_file,
    plan_adoption,
    unchecked,
)

__all__ = [
    "CALL_TIMEOUT_S",
    "CREDENTIALS_TIMEOUT_S",
    "IMPORT_IDS",
    "NOT_IMPORTABLE",
    "NO_CREDENTIALS",
    "UNSUPPORTED",
    "AdoptionReport",
    "Check",
    "Credentials",
    "Decision",
    "GoogleLookups",
    "Lookup",
    "Status",
    "absent",
    "existing_among",
    "exists",
    "import_file",
    "import_id",
    "plan_adoption",
    "resolve_credentials",
    "unchecked",
]
