"""Tags applied once: the stack's AWS provider carries them as default tags.

Every AWS resource in the stack is created through this provider (the components receive it via
`providers=[...]` and their children inherit it), and the stack files set
`pulumi:disable-default-providers: ["aws"]`, so a resource that bypassed it would fail to deploy.
AWS then adds Project, Environment and ManagedBy to every taggable resource; nothing repeats them.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def standard_tags(project: str, environment: str) -> dict[str, str]:
    return {"Project": project, "Environment": environment, "ManagedBy": "pulumi"}


def tagged_provider(project: str, environment: str, region: str) -> aws.Provider:
    """The explicit AWS provider of the stack: its region, and the standard tags as default tags.
    It is declared before the settings are accepted: the checks of the region go through it."""
    return aws.Provider(
        "aws",
        aws.ProviderArgs(
            region=region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=standard_tags(project, environment)),
        ),
        opts=pulumi.ResourceOptions(),
    )
