namespace Uprec.Symbols;

/// <summary>
/// A probe spec (the text of <c>-e</c>) that cannot be parsed. The message is one line: the spec, what is wrong
/// and an example of the right syntax.
/// </summary>
public sealed class ProbeSpecException(string message) : Exception(message);

/// <summary>
/// A binary or symbol that cannot be used: a missing or unreadable file, not ELF, not x86-64, malformed,
/// an unknown symbol (with suggestions) or an offset outside any code. The message is one line.
/// </summary>
public sealed class SymbolException(string message) : Exception(message);
