# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Parses each file given with PowerShell's own parser and prints one JSON document: per file its parse
# errors, the $spec hash table (option names, each option's keys with literal values), the commands
# called, the functions defined, the [Type]::Method calls and the #AnsibleRequires lines.
# Used by tests/pwsh/test_ps1_parser.py to compare with the tree-sitter grammar of tests/static.

using namespace System.Management.Automation.Language

param([Parameter(Mandatory = $true, ValueFromRemainingArguments = $true)][string[]]$Path)

$ErrorActionPreference = 'Stop'

Function ConvertFrom-LiteralAst {
    param([Ast]$Node)
    if ($Node -is [CommandExpressionAst]) { return ConvertFrom-LiteralAst $Node.Expression }
    if ($Node -is [PipelineAst] -and $Node.PipelineElements.Count -eq 1) {
        return ConvertFrom-LiteralAst $Node.PipelineElements[0]
    }
    if ($Node -is [StatementBlockAst] -and $Node.Statements.Count -eq 1) {
        return ConvertFrom-LiteralAst $Node.Statements[0]
    }
    if ($Node -is [ParenExpressionAst]) { return ConvertFrom-LiteralAst $Node.Pipeline }
    if ($Node -is [HashtableAst]) {
        $table = [ordered]@{}
        foreach ($pair in $Node.KeyValuePairs) {
            $table[[string]$pair.Item1.SafeGetValue()] = ConvertFrom-LiteralAst $pair.Item2
        }
        return $table
    }
    if ($Node -is [ArrayExpressionAst]) {
        $items = @(foreach ($statement in $Node.SubExpression.Statements) { , (ConvertFrom-LiteralAst $statement) })
        if ($items.Count -eq 1 -and $items[0] -is [System.Collections.IList]) { return , $items[0] }
        return , $items
    }
    if ($Node -is [ArrayLiteralAst]) {
        return , @(foreach ($element in $Node.Elements) { , (ConvertFrom-LiteralAst $element) })
    }
    if ($Node -is [UnaryExpressionAst] -and $Node.TokenKind -eq 'Comma') {
        return , @(, (ConvertFrom-LiteralAst $Node.Child))
    }
    if ($Node -is [VariableExpressionAst]) {
        switch ($Node.VariablePath.UserPath) {
            'true' { return $true }
            'false' { return $false }
            'null' { return $null }
        }
    }
    if ($Node -is [StringConstantExpressionAst] -or $Node -is [ConstantExpressionAst]) { return $Node.Value }
    return @{ opaque = $Node.Extent.Text }
}

$files = [ordered]@{}
foreach ($file in $Path) {
    $tokens = $null
    $errors = $null
    $ast = [Parser]::ParseFile($file, [ref]$tokens, [ref]$errors)
    $specs = @($ast.FindAll({
                param($n)
                $n -is [AssignmentStatementAst] -and $n.Left.Extent.Text -eq '$spec'
            }, $true) | ForEach-Object { , (ConvertFrom-LiteralAst $_.Right) })
    $files[$file] = [ordered]@{
        errors = @($errors | ForEach-Object { "line $($_.Extent.StartLineNumber): $($_.Message)" })
        specs = $specs
        commands = @($ast.FindAll({ param($n) $n -is [CommandAst] }, $true) | ForEach-Object { $_.GetCommandName() })
        functions = @($ast.FindAll({ param($n) $n -is [FunctionDefinitionAst] }, $true) | ForEach-Object { $_.Name })
        static_calls = @($ast.FindAll({
                    param($n)
                    $n -is [InvokeMemberExpressionAst] -and $n.Static -and $n.Expression -is [TypeExpressionAst]
                }, $true) | ForEach-Object {
                , @($_.Expression.TypeName.FullName, $_.Member.Value, $(if ($_.Arguments) { $_.Arguments.Count } else { 0 }))
            })
        requires = @($tokens | Where-Object { $_.Kind -eq 'Comment' -and $_.Text -like '#AnsibleRequires*' } |
                ForEach-Object { $_.Text.Trim() })
    }
}
$files | ConvertTo-Json -Depth 20 -Compress
