"""The bootstrap program: ``pulumi up`` from ``infra/bootstrap`` once per project."""

import pulumi

from infra.bootstrap.components import Bootstrap
from infra.bootstrap.config import NAMESPACE, parse_bootstrap_config

gcp_config = pulumi.Config("gcp")
cfg = parse_bootstrap_config(
    gcp_config.get("project"),
    gcp_config.get("region"),
    pulumi.Config(NAMESPACE).get_object("bootstrap"),
)
boot = Bootstrap("bootstrap", cfg)

pulumi.export("state_bucket_url", boot.state_bucket_url)
pulumi.export("secrets_provider", boot.secrets_provider)
pulumi.export("deployer_email", boot.deployer_email)
pulumi.export("workload_identity_provider", boot.workload_identity_provider)
pulumi.export("lock_database", boot.lock_database)
pulumi.export("builder_email", boot.builder_email)
pulumi.export("build_source_bucket", boot.build_source_bucket)
