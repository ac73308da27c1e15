"""Run configuration: pydantic schema plus Hydra-composed YAML presets."""
from nora.config.compose import group_choices, load_config, validate
from nora.config.schema import ConfigChange, RunConfig

__all__ = ["ConfigChange", "RunConfig", "group_choices", "load_config", "validate"]
