"""API shapes for tokens and access keys."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import AccessKey
from accounts.services import MAX_ACCESS_DAYS, MAX_KEYS_PER_BATCH
from pineaccess.models import PineScript


class TokenRequestSerializer(serializers.Serializer):
    """Credentials exchanged for an API token."""

    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, write_only=True)


class TokenSerializer(serializers.Serializer):
    """The API token of an approved user."""

    token = serializers.CharField()


class PineIdListField(serializers.ListField):
    """Script ids as a JSON list, repeated form fields, or one comma-separated string."""

    child = serializers.CharField()

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list | tuple):
            data = [
                part.strip()
                for item in data
                for part in (item.split(",") if isinstance(item, str) else [item])
                if not isinstance(part, str) or part.strip()
            ]
        return super().to_internal_value(data)


class AccessKeyCreateSerializer(serializers.Serializer):
    """What staff send to create keys."""

    count = serializers.IntegerField(min_value=1, max_value=MAX_KEYS_PER_BATCH)
    scripts = PineIdListField(
        required=False,
        default=list,
        help_text="TradingView script ids (PUB;...); empty or absent grants the default scripts.",
    )
    days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ACCESS_DAYS,
        required=False,
        allow_null=True,
        default=None,
        help_text="Access duration in days; empty or absent for lifetime access.",
    )
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    auto_approve = serializers.BooleanField(required=False, default=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_scripts(self, value: list[str]) -> list[PineScript]:
        """Resolve script ids to scripts; every id must be in the catalogue."""
        wanted = list(dict.fromkeys(pine_id.strip() for pine_id in value if pine_id.strip()))
        found = {script.pine_id: script for script in PineScript.objects.filter(pine_id__in=wanted)}
        unknown = [pine_id for pine_id in wanted if pine_id not in found]
        if unknown:
            raise serializers.ValidationError(
                f"No script in the catalogue has the id {', '.join(unknown)}. "
                "Add it under Pine scripts first."
            )
        return [found[pine_id] for pine_id in wanted]


class AccessKeySerializer(serializers.ModelSerializer):
    """A key as listed: everything but the raw key, which is never stored."""

    state = serializers.CharField(read_only=True)
    scripts = serializers.SlugRelatedField(slug_field="pine_id", many=True, read_only=True)
    days = serializers.IntegerField(source="access_days", read_only=True, allow_null=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    redeemed_by = serializers.CharField(
        source="redeemed_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = AccessKey
        fields = (
            "id",
            "state",
            "note",
            "scripts",
            "days",
            "auto_approve",
            "valid_until",
            "created_by",
            "created_at",
            "redeemed_by",
            "redeemed_at",
            "revoked_at",
        )
        read_only_fields = fields


class IssuedAccessKeySerializer(AccessKeySerializer):
    """A key just created, with the raw key: the only answer that ever contains it."""

    key = serializers.CharField(read_only=True, help_text="The raw key, shown in this answer only.")

    class Meta(AccessKeySerializer.Meta):
        fields = ("key", *AccessKeySerializer.Meta.fields)
        read_only_fields = fields

    def to_representation(self, instance):
        """Represent an IssuedAccessKey: the raw key, then the stored key's fields."""
        return {"key": instance.raw_key, **super().to_representation(instance.access_key)}


class IssuedAccessKeysSerializer(serializers.Serializer):
    """The answer to a create request."""

    count = serializers.IntegerField()
    keys = IssuedAccessKeySerializer(many=True)
