using System.Text;
using Uprec.Filters;
using Uprec.Native;
using Uprec.Symbols;

namespace Uprec.Probing.Engine;

/// <summary>
/// The fields a filter can read, and argument capture. Task fields (pid ppid uid comm exe) are known
/// when a process execs or forks, so a filter over them decides once per process whether the probe is
/// patched there at all (the seed's wants_probe); tid, arguments and retval are known only per hit.
/// </summary>
internal static class HitFields
{
    public static readonly string[] ProcessFields = ["pid", "ppid", "uid", "comm", "exe"];

    /// <summary>Fields and their kinds for checking a probe's filter before anything starts.</summary>
    public static IReadOnlyDictionary<string, FilterValueKind> For(ProbeSpec spec)
    {
        var fields = new Dictionary<string, FilterValueKind>(StringComparer.Ordinal)
        {
            ["pid"] = FilterValueKind.Integer, ["tid"] = FilterValueKind.Integer, ["ppid"] = FilterValueKind.Integer,
            ["uid"] = FilterValueKind.Integer, ["comm"] = FilterValueKind.String, ["exe"] = FilterValueKind.String,
        };
        for (int i = 1; i <= 6; i++) fields[$"arg{i}"] = FilterValueKind.Integer;
        if (spec.IsReturn) fields["retval"] = FilterValueKind.Integer;
        foreach (ArgSpec a in spec.Args)
            fields[a.Name] = a.Type == ArgType.String ? FilterValueKind.String : FilterValueKind.Integer;
        return fields;
    }

    /// <summary>Whether the probe needs the registers at each hit (captures, or a filter over hit fields).</summary>
    public static bool NeedsRegisters(Probe probe) =>
        probe.Spec.Args.Count > 0 || (probe.Filter?.Fields.Any(f => !ProcessFields.Contains(f)) ?? false);

    /// <summary>wants_probe: decided over the process's fields, with per-hit fields unknown.</summary>
    public static FilterDecision DecideForProcess(Filter filter, TracedProcess process, ProcStatus? status, string? comm) =>
        filter.Decide(field => field switch
        {
            "pid" => FilterValue.Of(process.Pid),
            "ppid" => FilterValue.Of(status?.PPid ?? process.Ppid),
            "uid" => status is null ? FilterValue.Missing : FilterValue.Of(status.Uid),
            "comm" => FilterValue.Of(comm),
            "exe" => FilterValue.Of(process.Exe),
            _ => FilterValue.Missing,
        }, field => ProcessFields.Contains(field));

    public static ulong Register(in user_regs_struct regs, string name) => name switch
    {
        "rdi" => regs.rdi, "rsi" => regs.rsi, "rdx" => regs.rdx, "rcx" => regs.rcx, "r8" => regs.r8, "r9" => regs.r9,
        "rax" => regs.rax, "rbx" => regs.rbx, "rbp" => regs.rbp, "rsp" => regs.rsp,
        "r10" => regs.r10, "r11" => regs.r11, "r12" => regs.r12, "r13" => regs.r13, "r14" => regs.r14, "r15" => regs.r15,
        _ => 0,
    };

    /// <summary>The captured values in the probe's argument order: long, ulong (u64) or string (null if unreadable).</summary>
    public static object?[] Capture(ProbeSpec spec, in user_regs_struct regs, ProcessMemory memory)
    {
        var values = new object?[spec.Args.Count];
        for (int i = 0; i < values.Length; i++)
        {
            ArgSpec a = spec.Args[i];
            ulong raw = Register(regs, a.SourceRegister);
            values[i] = a.Type == ArgType.String ? ReadString(memory, raw, a.MaxStringLength) : Typed(a.Type, raw);
        }
        return values;
    }

    /// <summary>How an integer capture reads its register: the low Bits, sign- or zero-extended; null for strings.
    /// The trap path (Typed) and the trampolines' compiled filters both go by this one table.</summary>
    public static (int Bits, bool Signed)? Shape(ArgType type) => type switch
    {
        ArgType.U8 => (8, false), ArgType.U16 => (16, false), ArgType.U32 => (32, false), ArgType.U64 => (64, false),
        ArgType.S8 => (8, true), ArgType.S16 => (16, true), ArgType.S32 => (32, true),
        ArgType.S64 or ArgType.X64 => (64, true),
        _ => null,
    };

    /// <summary>An integer capture as the trace stores it: long, or ulong for u64.</summary>
    public static object? Typed(ArgType type, ulong raw)
    {
        if (Shape(type) is not (int bits, bool signed)) return null;
        if (bits == 64) return signed ? (long)raw : raw;
        int unused = 64 - bits;
        return signed ? ((long)raw << unused) >> unused : (long)((raw << unused) >> unused);
    }

    /// <summary>The captures of an in-process record: up to two raw registers, in the probe's argument order.</summary>
    public static object?[] FromRaw(ProbeSpec spec, ulong first, ulong second)
    {
        var values = new object?[spec.Args.Count];
        for (int i = 0; i < values.Length && i < 2; i++) values[i] = Typed(spec.Args[i].Type, i == 0 ? first : second);
        return values;
    }

    /// <summary>A NUL-terminated string of at most <paramref name="max"/> bytes; null for an unreadable pointer.</summary>
    public static string? ReadString(ProcessMemory memory, ulong address, int max)
    {
        if (address == 0) return null;
        var buffer = new byte[Math.Max(1, max)];
        int got = 0;
        // Read page by page: a string that ends just before an unmapped page is still readable.
        while (got < buffer.Length)
        {
            ulong at = address + (ulong)got;
            int chunk = (int)Math.Min((ulong)(buffer.Length - got), 4096 - (at & 4095));
            if (!memory.TryRead(at, buffer.AsSpan(got, chunk))) break;
            int nul = buffer.AsSpan(got, chunk).IndexOf((byte)0);
            if (nul >= 0) return Encoding.UTF8.GetString(buffer, 0, got + nul);
            got += chunk;
        }
        return got == 0 ? null : Encoding.UTF8.GetString(buffer, 0, got);
    }

    /// <summary>The per-hit resolver: task fields, the six argument registers, and the named captures.</summary>
    public static FieldResolver ForHit(TracedTask task, ProbeSpec spec, user_regs_struct regs, object?[]? captured) => field =>
    {
        switch (field)
        {
            case "pid": return FilterValue.Of(task.Process.Pid);
            case "tid": return FilterValue.Of(task.Tid);
            case "ppid": return FilterValue.Of(task.Process.Ppid);
            case "uid": return FilterValue.Of(task.Process.Uid);
            case "comm": return FilterValue.Of(task.Comm);
            case "exe": return FilterValue.Of(task.Process.Exe);
            case "arg1": return FilterValue.Of(regs.rdi);
            case "arg2": return FilterValue.Of(regs.rsi);
            case "arg3": return FilterValue.Of(regs.rdx);
            case "arg4": return FilterValue.Of(regs.rcx);
            case "arg5": return FilterValue.Of(regs.r8);
            case "arg6": return FilterValue.Of(regs.r9);
        }
        for (int i = 0; i < spec.Args.Count; i++)
        {
            if (spec.Args[i].Name != field || captured is null) continue;
            return captured[i] switch
            {
                long l => FilterValue.Of(l),
                ulong u => FilterValue.Of(u),
                string s => FilterValue.Of(s),
                _ => FilterValue.Missing,
            };
        }
        return FilterValue.Missing;
    };
}
