"""DRF serializers for scripts and access (shared/specs/interfaces.md names)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from pineaccess.models import PineScript, ScriptAccess


class PineScriptSerializer(serializers.ModelSerializer):
    class Meta:
        model = PineScript
        fields = ["id", "pine_id", "name", "description", "active"]
        extra_kwargs = {"name": {"required": False, "allow_blank": True}}

    def validate_pine_id(self, value: str) -> str:
        if self.instance is not None and value != self.instance.pine_id:
            raise serializers.ValidationError(
                "A script's TradingView id cannot change; add the new script and switch this one off."
            )
        return value.strip()


class ScriptAccessSerializer(serializers.ModelSerializer):
    script_name = serializers.CharField(source="script.name", read_only=True)
    pine_id = serializers.CharField(source="script.pine_id", read_only=True)
    last_error = serializers.SerializerMethodField()

    class Meta:
        model = ScriptAccess
        fields = [
            "id",
            "user",
            "script",
            "script_name",
            "pine_id",
            "tradingview_username",
            "status",
            "expires_at",
            "granted_at",
            "last_error",
        ]
        read_only_fields = fields

    def get_last_error(self, row: ScriptAccess) -> str:
        """Staff see TradingView's full reason; a buyer sees what they can act on."""
        request = self.context.get("request")
        if request is not None and request.user.is_staff:
            return row.last_error
        return row.user_facing_error


class ScriptAccessGrantSerializer(serializers.Serializer):
    """What staff send to grant a script: the user, the script and the days (null for lifetime)."""

    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all())
    script = serializers.PrimaryKeyRelatedField(queryset=PineScript.objects.all())
    days = serializers.IntegerField(
        min_value=1, allow_null=True, help_text="Days of access; null for lifetime."
    )


class ScriptAccessChangeSerializer(serializers.Serializer):
    """What staff send to change access: add days, or set the exact expiry (null for lifetime)."""

    days = serializers.IntegerField(min_value=1, required=False, help_text="Days to add.")
    expires_at = serializers.DateTimeField(allow_null=True, required=False)

    def validate(self, attrs: dict) -> dict:
        if ("days" in attrs) == ("expires_at" in attrs):
            raise serializers.ValidationError("Send either days (to add) or expires_at (null for lifetime).")
        return attrs


class UsernameCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField(allow_null=True)
    username = serializers.CharField(required=False)
    error = serializers.CharField(required=False)
