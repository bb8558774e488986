# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible.Basic's argument handling (ansible-core ``module_utils/csharp/Ansible.Basic.cs``), in Python.

``AnsibleModule.Create($args, $spec)`` for the simulated host: the spec comes from the ``.ps1``'s own
``$spec`` (evaluated from its AST), the arguments from the payload. Same order of checks, same
semantics and same wording of messages as Ansible.Basic:

* the spec itself is validated (unknown keys, value types, unknown ``type``/``elements``, required with
  a default), a bad spec fails with ``internal error: ...``;
* option names and aliases match without regard to case and are renamed to the spec's spelling;
* check mode on a module without ``supports_check_mode`` skips it;
* ``mutually_exclusive`` counts the options present before defaults; defaults; ``required``;
* type conversion (str, path, int, bool, list, dict, raw, float, json) as the .NET parsers do;
* ``choices`` match without regard to case and the value is handed on as written;
* ``required_together``, ``required_one_of``, ``required_if``, ``required_by``;
* sub-option specs of ``dict`` options and of ``list``/``elements: dict`` entries, with
  ``found in <option>`` in their messages.
"""
import json
import re

BOOLEANS_TRUE = ["y", "yes", "on", "1", "true", "t", "1.0"]
BOOLEANS_FALSE = ["n", "no", "off", "0", "false", "f", "0.0"]
PASS_VARS = {"check_mode": "CheckMode", "debug": "DebugMode", "diff": "DiffMode", "keep_remote_files": None,
             "ignore_unknown_opts": "ignoreUnknownOpts", "inject_invocation": None, "module_name": "ModuleName",
             "no_log": "NoLog", "remote_tmp": None, "selinux_special_fs": None, "shell_executable": None,
             "socket": None, "string_conversion_action": None, "syslog_facility": None, "target_log_info": None,
             "tmpdir": None, "tracebacks_for": None, "verbosity": None, "version": None}
SPEC_KEYS = ["apply_defaults", "aliases", "choices", "default", "deprecated_aliases", "elements",
             "mutually_exclusive", "no_log", "options", "removed_in_version", "removed_at_date",
             "removed_from_collection", "required", "required_by", "required_if", "required_one_of",
             "required_together", "supports_check_mode", "type"]
_LIST_KEYS = {"aliases": str, "choices": None, "deprecated_aliases": dict, "mutually_exclusive": None,
              "required_if": None, "required_one_of": None, "required_together": None}
_BOOL_KEYS = ("apply_defaults", "no_log", "required", "supports_check_mode")
_DICT_KEYS = ("options", "required_by")
_NET_TYPES = {"list": "System.Collections.Generic.List`1[System.Object]", "dict": "System.Collections.Hashtable",
              "bool": "System.Boolean"}
OPTION_TYPES = ("bool", "dict", "float", "int", "json", "list", "path", "raw", "sid", "str")
# %VARIABLE% of a Windows host, for ParsePath's Environment.ExpandEnvironmentVariables.
WINDOWS_ENV = {"programdata": "C:\\ProgramData", "systemroot": "C:\\Windows", "windir": "C:\\Windows",
               "systemdrive": "C:", "temp": "C:\\Windows\\Temp", "tmp": "C:\\Windows\\Temp",
               "programfiles": "C:\\Program Files", "userprofile": "C:\\Users\\ansible"}


class Exit(Exception):
    """The module exits: ``result`` is what Ansible.Basic prints (failed, skipped...)."""

    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


class SpecNotSimulated(Exception):
    """A spec value the simulation cannot evaluate (a script block, a variable)."""


class _ConvertError(Exception):
    pass


def net_type(value):
    """The .NET type name of a value as PowerShell hands it to Ansible.Basic."""
    if isinstance(value, bool):
        return "System.Boolean"
    if isinstance(value, int):
        return "System.Int32" if -2 ** 31 <= value < 2 ** 31 else "System.Int64"
    if isinstance(value, float):
        return "System.Double"
    if isinstance(value, str):
        return "System.String"
    if isinstance(value, list):
        return "System.Object[]"
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    return "System.Object"


def net_str(value):
    """``value.ToString()`` in .NET."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return ("%d" % value) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, tuple)):
        return "System.Object[]"
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    return str(value)


def parse_str(value):
    return net_str(value)


def parse_bool(value):
    if isinstance(value, bool):
        return value
    text = net_str(value).lower().strip()
    if text in BOOLEANS_TRUE:
        return True
    if text in BOOLEANS_FALSE:
        return False
    raise _ConvertError("The value '%s' is not a valid boolean. Valid booleans include: %s"
                        % (text, ", ".join(BOOLEANS_TRUE + BOOLEANS_FALSE)))


def parse_int(value):
    if isinstance(value, int) and not isinstance(value, bool) and -2 ** 31 <= value < 2 ** 31:
        return value
    text = net_str(value).strip()
    if not re.match(r"^[+-]?\d+$", text):
        raise _ConvertError("Input string was not in a correct format.")
    number = int(text)
    if not -2 ** 31 <= number < 2 ** 31:
        raise _ConvertError("Value was either too large or too small for an Int32.")
    return number


def parse_float(value):
    if isinstance(value, float):
        return value
    try:
        return float(net_str(value))
    except ValueError:
        raise _ConvertError("Input string was not in a correct format.")


def parse_list(value):
    if value is None:
        return None
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):
        return [s.strip() for s in value.split(",")]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    raise _ConvertError("%s cannot be converted to a list" % net_type(value))


def parse_dict(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}"):
            try:
                return json.loads(value)
            except ValueError as e:
                raise _ConvertError("Failed to parse JSON: %s" % e)
        if "=" in value:
            fields, buf, quote, escape = [], [], None, False
            for c in value:
                if escape:
                    buf.append(c)
                    escape = False
                elif c == "\\":
                    escape = True
                elif quote is None and c in "'\"":
                    quote = c
                elif quote is not None and c == quote:
                    quote = None
                elif quote is None and c in ", ":
                    if buf:
                        fields.append("".join(buf))
                    buf = []
                else:
                    buf.append(c)
            if buf:
                fields.append("".join(buf))
            result = {}
            for field in dict.fromkeys(fields):
                k, _, v = field.partition("=")
                result[k] = v if "=" in field else None
            return result
        raise _ConvertError("string cannot be converted to a dict, must either be a JSON string or in the "
                            "key=value form")
    raise _ConvertError("%s cannot be converted to a dict" % net_type(value))


def parse_path(value):
    text = net_str(value)
    if text.startswith("\\\\?\\"):
        return text
    text = re.sub(r"%([^%]+)%", lambda m: WINDOWS_ENV.get(m.group(1).lower(), m.group(0)), text)
    if any(c in '"<>|' or ord(c) < 32 for c in text):
        raise _ConvertError("string value contains invalid path characters, cannot convert to path")
    if ":" in text[2:] if not text.startswith("\\\\") else ":" in text:
        raise _ConvertError("The given path's format is not supported.")
    return text


def parse_json(value):
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise _ConvertError("%s cannot be converted to json" % net_type(value))


def parse_sid(value):
    raise _ConvertError("esesim: type sid is not simulated")


CONVERTERS = {"bool": parse_bool, "dict": parse_dict, "float": parse_float, "int": parse_int, "json": parse_json,
              "list": parse_list, "path": parse_path, "raw": lambda v: v, "sid": parse_sid, "str": parse_str}


class Params(dict):
    """A PowerShell Hashtable: keys compare without regard to case, the spelling is kept."""

    def _key(self, key):
        if dict.__contains__(self, key):
            return key
        low = key.lower()
        return next((k for k in dict.keys(self) if k.lower() == low), key)

    def __contains__(self, key):
        return dict.__contains__(self, self._key(key))

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __setitem__(self, key, value):
        dict.__setitem__(self, self._key(key), value)

    def __delitem__(self, key):
        dict.__delitem__(self, self._key(key))

    def get(self, key, default=None):
        return self[key] if key in self else default


class AnsibleModule:
    """``[Ansible.Basic.AnsibleModule]::Create($args, $spec)``: raises Exit for a failure or a skip."""

    def __init__(self, args, spec):
        self.context = []
        self.check_mode = False
        self.module_name = "undefined win module"
        self.ignore_unknown = False
        self.result = {"changed": False}
        spec = _copy(spec)
        try:
            self._validate_spec(spec)
            self._set_spec_defaults(spec)
            params = Params(args)
            aliases = self._aliases(spec, params)
        except _SpecError as e:
            raise Exit({"failed": True, "msg": "internal error: %s" % e})
        legal = ["_ansible_" + k for k in PASS_VARS] + list(spec["options"]) + list(aliases)
        self.params = params
        self._check_arguments(spec, params, legal)
        self.result["invocation"] = {"module_args": params}

    # -- Ansible.Basic's FailJson / ExitJson -----------------------------------------------------------
    def fail_json(self, msg):
        result = dict(self.result, failed=True, msg=msg)
        raise Exit(result)

    def _ctx(self, msg, prefix=" "):
        if self.context:
            msg += "%sfound in %s" % (prefix, " -> ".join(self.context))
        return msg

    # -- the spec ---------------------------------------------------------------------------------------
    def _validate_spec(self, spec):
        for key, value in list(spec.items()):
            if key not in SPEC_KEYS:
                raise _SpecError(self._ctx("argument spec entry contains an invalid key '%s', valid keys: %s"
                                           % (key, ", ".join(SPEC_KEYS)), " - "))
            if _is_opaque(value) and key not in ("type", "elements", "default", "removed_at_date"):
                raise SpecNotSimulated("esesim: spec value %s = %s is not simulated" % (key, value.text))
            if value is not None and not _is_opaque(value):
                expected = None
                if key in _BOOL_KEYS and not isinstance(value, bool):
                    expected = _NET_TYPES["bool"]
                elif key in _DICT_KEYS and not isinstance(value, dict):
                    expected = _NET_TYPES["dict"]
                elif key in _LIST_KEYS:
                    entry = _LIST_KEYS[key]
                    if entry is not None and isinstance(value, entry):
                        spec[key] = [value]
                    elif not isinstance(value, list):
                        expected = _NET_TYPES["list"]
                elif key in ("removed_in_version", "removed_from_collection") and not isinstance(value, str):
                    expected = "System.String"
                if expected:
                    raise _SpecError(self._ctx("argument spec for '%s' did not match expected type %s: actual type %s"
                                               % (key, expected, net_type(value)), " - "))
            if key == "options" and isinstance(value, dict):
                for name, meta in value.items():
                    self.context.append(name)
                    if not isinstance(meta, dict):
                        raise _SpecError("option %s is not a hashtable" % name)
                    self._validate_spec(meta)
                    self.context.pop()
            if key in ("type", "elements") and value is not None:
                if _is_opaque(value):
                    raise SpecNotSimulated("esesim: a %s delegate (%s) is not simulated" % (key, value.text))
                if not isinstance(value, str):
                    raise _SpecError(self._ctx("%s must either be a string or delegate, was: %s"
                                               % (key, net_type(value)), " - "))
                if value not in OPTION_TYPES:
                    raise _SpecError("%s. Valid types are: %s" % (self._ctx("%s '%s' is unsupported" % (key, value),
                                                                            " - "), ", ".join(OPTION_TYPES)))

    def _set_spec_defaults(self, spec):
        defaults = {"apply_defaults": False, "aliases": [], "choices": [], "default": None,
                    "deprecated_aliases": [], "elements": None, "mutually_exclusive": [], "no_log": False,
                    "options": {}, "removed_in_version": None, "removed_at_date": None,
                    "removed_from_collection": None, "required": False, "required_by": {}, "required_if": [],
                    "required_one_of": [], "required_together": [], "supports_check_mode": False, "type": "str"}
        for key, value in defaults.items():
            if key not in spec:
                spec[key] = _copy(value)
        for name, meta in (spec.get("options") or {}).items():
            self.context.append(name)
            self._set_spec_defaults(meta)
            self.context.pop()

    def _aliases(self, spec, params):
        found = {}
        for name, meta in spec["options"].items():
            if meta["default"] is not None and meta["required"]:
                raise _SpecError("required and default are mutually exclusive for %s" % name)
            for alias in meta["aliases"]:
                found[alias] = name
                if alias in params:
                    params[name] = params[alias]
        return found

    # -- the arguments ----------------------------------------------------------------------------------
    def _check_arguments(self, spec, params, legal):
        self._check_unsupported(params, legal)
        if self.check_mode and not spec["supports_check_mode"] and not self.context:
            raise Exit(dict(self.result, skipped=True,
                            msg="remote module (%s) does not support check mode" % self.module_name))
        options = spec["options"]
        self._mutually_exclusive(params, spec["mutually_exclusive"])
        self._required(options, params)
        for name, meta in options.items():
            value = params[name] if name in params else None
            if value is None:
                continue
            kind = meta["type"]
            try:
                value = CONVERTERS[kind](value)
                params[name] = value
            except _ConvertError as e:
                self.fail_json(self._ctx("argument for %s is of type %s and we were unable to convert to %s: %s"
                                         % (name, net_type(value), kind, e)))
            choices = [net_str(c) for c in meta["choices"]]
            if choices:
                values = [net_str(v) for v in value] if kind == "list" else [net_str(value)]
                lowered = [c.lower() for c in choices]
                diff = list(dict.fromkeys(v for v in values if v.lower() not in lowered))
                if diff:
                    self.fail_json(self._ctx("value of %s must be %s: %s. Got no match for: %s"
                                             % (name, "one or more of" if kind == "list" else "one of",
                                                ", ".join(choices), ", ".join(diff))))
        self._required_together(params, spec["required_together"])
        self._required_one_of(params, spec["required_one_of"])
        self._required_if(params, spec["required_if"])
        self._required_by(params, spec["required_by"])
        for name, meta in options.items():
            if name not in params:
                params[name] = None
            self._sub_option(params, name, meta)

    def _check_unsupported(self, params, legal):
        unsupported, case_diff, removed = set(), [], []
        legal_lower = {k.lower(): k for k in reversed(legal)}
        for key in list(params):
            if key.lower() not in legal_lower:
                unsupported.add(key)
            elif key not in legal:
                case_diff.append(key)
            elif key.startswith("_ansible_"):
                removed.append(key)
                var = key[len("_ansible_"):]
                if var == "check_mode":
                    self.check_mode = parse_bool(params[key])
                elif var == "module_name":
                    self.module_name = params[key]
                elif var == "ignore_unknown_opts":
                    self.ignore_unknown = parse_bool(params[key])
        for key in removed:
            del params[key]
        if unsupported and not self.ignore_unknown:
            shown = sorted((k for k in legal if not k.startswith("_ansible_")), key=_ordinal)
            given = ", ".join(sorted(unsupported, key=_ordinal))
            msg = "Unsupported parameters for (%s) module: %s" % (self.module_name, given)
            self.fail_json("%s. Supported parameters include: %s" % (self._ctx(msg), ", ".join(shown)))
        for key in case_diff:  # renamed to the spec's spelling
            value = dict.__getitem__(params, key)
            dict.__delitem__(params, key)
            dict.__setitem__(params, legal_lower[key.lower()], value)

    def _mutually_exclusive(self, params, checks):
        for check in checks or []:
            if sum(1 for name in check if name in params) > 1:
                self.fail_json(self._ctx("parameters are mutually exclusive: %s" % ", ".join(check)))

    def _required(self, options, params):
        missing = []
        for name, meta in options.items():
            if meta["default"] is not None and name not in params:
                params[name] = _copy(meta["default"])
            if meta["required"] and name not in params:
                missing.append(name)
        if missing:
            self.fail_json(self._ctx("missing required arguments: %s" % ", ".join(missing)))

    def _required_together(self, params, checks):
        for check in checks or []:
            found = [name in params for name in check]
            if any(found) and not all(found):
                self.fail_json(self._ctx("parameters are required together: %s" % ", ".join(check)))

    def _required_one_of(self, params, checks):
        for check in checks or []:
            if not any(name in params for name in check):
                self.fail_json(self._ctx("one of the following is required: %s" % ", ".join(check)))

    def _required_if(self, params, checks):
        for check in checks or []:
            if len(check) < 3:
                self.fail_json("internal error: invalid required_if value count of %d, expecting 3 or 4 entries"
                               % len(check))
            one = len(check) == 4 and bool(check[3])
            key, val, requirements = check[0], check[1], check[2]
            requirements = requirements if isinstance(requirements, list) else [requirements]
            current = params[key] if key in params else None
            if current is None or net_str(current) != net_str(val):
                continue
            missing = [r for r in requirements if r not in params]
            if len(missing) >= (len(requirements) if one else 1):
                self.fail_json(self._ctx("%s is %s but %s of the following are missing: %s"
                                         % (key, net_str(val), "any" if one else "all", ", ".join(missing))))

    def _required_by(self, params, checks):
        for key, requires in (checks or {}).items():
            if key not in params:
                continue
            missing = [r for r in parse_list(requires) if r not in params]
            if missing:
                self.fail_json(self._ctx("missing parameter(s) required by '%s': %s" % (key, ", ".join(missing))))

    def _sub_option(self, params, name, meta):
        value = params[name]
        kind, elements = meta["type"], meta["elements"]
        if not (kind == "dict" or (kind == "list" and elements is not None)):
            return
        if kind == "list":
            if value is None:
                return
            converted = []
            for element in value:
                if elements == "dict":
                    converted.append(self._sub_spec(meta, element, name))
                else:
                    try:
                        converted.append(CONVERTERS[elements](element))
                    except _ConvertError:
                        self.fail_json(self._ctx("argument for list entry %s is of type %s and we were unable to "
                                                 "convert to %s: Exception has been thrown by the target of an "
                                                 "invocation." % (name, net_type(element), elements)))
            params[name] = converted
        else:
            params[name] = self._sub_spec(meta, value, name)

    def _sub_spec(self, spec, value, context):
        options = spec["options"]
        if spec["apply_defaults"] and options and value is None:
            value = {}
        elif not options or value is None:
            return value
        self.context.append(context)
        try:
            new = dict(parse_dict(value))
        except _ConvertError as e:
            self.fail_json("%s" % e)
        try:
            aliases = self._aliases(spec, new)
        except _SpecError as e:
            raise Exit({"failed": True, "msg": "internal error: %s" % e})
        self._check_arguments(spec, new, list(options) + list(aliases))
        self.context.pop()
        return new


class _SpecError(Exception):
    pass


def _is_opaque(value):
    return type(value).__name__ == "Opaque"


def _ordinal(text):
    return [ord(c) for c in text]


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
