"""Tags applied once: the stack's AWS provider carries them as default tags.

Every AWS resource in the stack is created through this provider (the components receive it via
`providers=[...]` and their children inherit it), and the stack files set
`pulumi:disable-default-providers: ["aws"]`, so a resource that bypassed it would fail to deploy.
AWS then adds Project, Environment and ManagedBy to every taggable resource; nothing repeats them.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.settings import Settings


def standard_tags(settings: Settings) -> dict[str, str]:
    return {
        "Project": settings.project,
        "Environment": settings.environment,
        "ManagedBy": "pulumi",
    }


def tagged_provider(settings: Settings) -> aws.Provider:
    """The explicit AWS provider of the stack: its region, and the standard tags as default tags."""
    return aws.Provider(
        "aws",
        aws.ProviderArgs(
            region=settings.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=standard_tags(settings)),
        ),
        opts=pulumi.ResourceOptions(),
    )
