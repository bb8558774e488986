# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PowerShell source -> tree-sitter AST helpers for the static contract tests.

Values of literal expressions (hash tables, arrays, strings, numbers, $true/$false/$null) are
evaluated from the AST; anything else evaluates to an :class:`Opaque` holding its source text.
"""
import tree_sitter
import tree_sitter_powershell

LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())


class Opaque:
    def __init__(self, node):
        self.type = node.type
        self.text = node.text.decode("utf-8")

    def __repr__(self):
        return "Opaque(%s: %s)" % (self.type, self.text)


def parse(source):
    if isinstance(source, str):
        source = source.encode("utf-8")
    return tree_sitter.Parser(LANGUAGE).parse(source)


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def problems(tree):
    """(line, column, kind, text) of every ERROR or MISSING node."""
    found = []
    for node in walk(tree.root_node):
        if node.is_error or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            found.append((node.start_point[0] + 1, node.start_point[1] + 1, kind, node.text.decode()[:60]))
    return found


def _unwrap(node):
    """Descend through single-child wrapper nodes (pipeline, expressions of one operand...)."""
    while True:
        named = [c for c in node.named_children if c.type != "comment"]
        if node.type in ("hash_literal_expression", "array_expression", "hash_literal_body",
                         "argument_expression_list") or node.type == "array_literal_expression" and len(named) > 1:
            return node
        if len(named) == 1 and len(node.children) == 1 or (len(named) == 1 and node.type in (
                "pipeline", "pipeline_chain", "string_literal", "unary_expression", "parenthesized_expression",
                "statement_list", "sub_expression")):
            node = named[0]
            continue
        return node


def value(node):
    """Evaluate a literal expression node."""
    node = _unwrap(node)
    kind = node.type
    if kind == "hash_literal_expression":
        body = [c for c in node.named_children if c.type == "hash_literal_body"]
        return value(body[0]) if body else {}
    if kind == "hash_literal_body":
        return dict(_entry(e) for e in node.named_children if e.type == "hash_entry")
    if kind == "array_literal_expression":
        return [value(c) for c in node.named_children if c.type != "comment"]
    if kind == "array_expression":
        inner = [c for c in node.named_children if c.type != "comment"]
        if not inner:
            return []
        items = value(inner[0])
        return items if isinstance(items, list) else [items]
    if kind == "verbatim_string_characters":
        return node.text.decode("utf-8")[1:-1].replace("''", "'")
    if kind == "expandable_string_literal":
        text = node.text.decode("utf-8")[1:-1]
        if "$" in text or "`" in text:
            return Opaque(node)
        return text
    if kind in ("decimal_integer_literal",):
        return int(node.text.decode().rstrip("lL"))
    if kind == "hexadecimal_integer_literal":
        return int(node.text.decode(), 16)
    if kind == "variable":
        name = node.text.decode().lower()
        if name in ("$true", "$false", "$null"):
            return {"$true": True, "$false": False, "$null": None}[name]
    if kind in ("unary_expression", "expression_with_unary_operator") and node.text.decode().startswith(","):
        inner = [c for c in node.named_children if c.type != "comment"]
        return [value(inner[0])]
    return Opaque(node)


def _entry(entry):
    key_node, value_node = [c for c in entry.named_children if c.type != "comment"][:2]
    key = key_node.text.decode("utf-8").strip("'\"")
    return key, value(value_node)


def assignments(tree, variable):
    """Value nodes of every ``$variable = <value>`` statement."""
    wanted = "$" + variable.lower()
    for node in walk(tree.root_node):
        if node.type == "assignment_expression":
            named = node.named_children
            if named and named[0].text.decode().lower() == wanted:
                yield named[-1]


def static_calls(tree):
    """(type name, method, argument count, line) of every ``[Type]::Method(args)`` call."""
    for node in walk(tree.root_node):
        if node.type != "invokation_expression":
            continue
        kids = node.children
        if len(kids) < 3 or kids[0].type != "type_literal" or kids[1].type != "::":
            continue
        method = next((c for c in kids if c.type == "member_name"), None)
        args = next((c for c in kids if c.type == "argument_list"), None)
        if method is None or args is None:
            continue  # a static property, not a call
        yield (kids[0].text.decode().strip("[] "), method.text.decode(), _arity(args), node.start_point[0] + 1)


def _arity(argument_list):
    inner = [c for c in argument_list.named_children if c.type != "comment"]
    if not inner:
        return 0
    if inner[0].type == "argument_expression_list":
        return len([c for c in inner[0].named_children if c.type not in ("comment",)])
    return len(inner)


def comments(tree):
    return [n.text.decode("utf-8") for n in walk(tree.root_node) if n.type == "comment"]
