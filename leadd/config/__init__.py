"""YAML -> frozen, typed Config. One loader; every error names the file, the key path and the fix.

convert.py  YAML values -> typed settings ("30s" -> 30.0, "09:00-18:00" -> minutes)
fields.py   how a setting is declared: default, converter, expectation, on its field
model.py    the frozen dataclasses: every key and its default, written once
node.py     reading the document: key paths, collected problems, unknown keys, ${ENV}
build.py    sections beyond the field table, and the checks spanning sections
demo.py     the built-in default sequence and demo configuration
loader.py   load a file, the demo, or find which file to load
checks.py   settings that load but probably will not work (warnings)
chat_key.py the chat link secret's key file when none is configured (daemon start-up)
"""

from leadd.config.build import build
from leadd.config.checks import warnings
from leadd.config.convert import CHANNELS, LEAD_STATES, WEEKDAYS, parse_duration
from leadd.config.demo import DEFAULT_SEQUENCE, DEMO_CONFIG
from leadd.config.loader import demo, load, resolve_path
from leadd.config.model import (
    ApiConfig,
    ApiToken,
    ChatConfig,
    ComplianceConfig,
    Config,
    DatabaseConfig,
    HttpConfig,
    LeadsConfig,
    Location,
    LoggingConfig,
    SendgridConfig,
    SequenceStep,
    Service,
    ShopmonkeyConfig,
    StaffUser,
    TenantConfig,
    TouchpointsConfig,
    TwilioConfig,
)
from leadd.config.node import ConfigError

__all__ = [
    "CHANNELS",
    "DEFAULT_SEQUENCE",
    "DEMO_CONFIG",
    "LEAD_STATES",
    "WEEKDAYS",
    "ApiConfig",
    "ApiToken",
    "ChatConfig",
    "ComplianceConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HttpConfig",
    "LeadsConfig",
    "Location",
    "LoggingConfig",
    "SendgridConfig",
    "SequenceStep",
    "Service",
    "ShopmonkeyConfig",
    "StaffUser",
    "TenantConfig",
    "TouchpointsConfig",
    "TwilioConfig",
    "build",
    "demo",
    "load",
    "parse_duration",
    "resolve_path",
    "warnings",
]
