using Uprec.Probing.Arch;
using Uprec.Symbols;

namespace Uprec.Probing.Engine;

/// <summary>A patched instruction: the int3 at <see cref="Address"/> and what it displaced.</summary>
internal sealed class Site
{
    public required ulong Address { get; init; }
    /// <summary>The original bytes from the site on (up to 16), as they were before any patch of ours.</summary>
    public required byte[] Original { get; init; }
    public required FileKey File { get; init; }
    public required long FileOffset { get; init; }
    /// <summary>User probes hit here, in -e order. Several probes on one address share the one patch.</summary>
    public List<Probe> Probes { get; } = [];
    /// <summary>What a hit here means besides the user probes on it.</summary>
    public SiteKind Kind { get; set; }
    public bool IsLoaderEvent => Kind == SiteKind.Loader;
    /// <summary>Chosen on the first hit, when the out-of-line slot exists; then fixed for this address space.</summary>
    public TrapPlan? Plan { get; set; }
    public ulong Slot { get; set; }
    public bool Removed { get; set; }
    /// <summary>The in-process patch this site may take (null: the trap path only).</summary>
    public PatchablePlan? Patch { get; set; }
    /// <summary>The program may read the flags the trampoline changes (TrampolineBuilder.FlagsMayBeLive).</summary>
    public bool FlagsLive { get; init; } = true;
    /// <summary>The int3 has become a jmp to a trampoline.</summary>
    public bool Promoted { get; set; }
    /// <summary>Promoted, but a probe was added since: the trampoline must be built again.</summary>
    public bool Stale { get; set; }
    public bool NeedsPatch => !Removed && Patch is not null && (!Promoted || Stale);
    /// <summary>How many bytes of <see cref="Original"/> our patch replaced.</summary>
    public int PatchedLength => Promoted ? PatchSiteAnalyzer.JumpLength : 1;
}

/// <summary>Internal sites uprec places for itself.</summary>
internal enum SiteKind
{
    /// <summary>User probes only.</summary>
    Probe,
    /// <summary>The dynamic loader's _dl_debug_state: the set of loaded objects changed (r_debug protocol).</summary>
    Loader,
    /// <summary>An unwinder entry (_Unwind_RaiseException...): put hijacked return addresses back first.</summary>
    Unwind,
    /// <summary>__cxa_begin_catch: frames below the handler are gone; re-hijack those still live.</summary>
    Catch,
    /// <summary>_Unwind_Backtrace: like Unwind, but the stack survives, so its return re-hijacks.</summary>
    Backtrace,
    /// <summary>Where a backtrace returns to: hijack again what the backtrace had put back; then removed.</summary>
    Rehijack,
    /// <summary>libc's execve: the address space is about to go; read its rings and counters one last time.</summary>
    Exec,
}

/// <summary>An executable area uprec mapped into the target for out-of-line copies (the seed's XOL area).</summary>
internal sealed class XolRegion(ulong start, ulong size)
{
    public ulong Start { get; } = start;
    public ulong Size { get; } = size;
    public ulong Used { get; set; }
}

/// <summary>
/// One mm: what several processes share after vfork (and threads always). Holds the patches and the XOL
/// regions. After fork the child gets a copy (<see cref="CloneFor"/>): the kernel copied the patched pages too.
/// </summary>
internal sealed class AddressSpace : IDisposable
{
    public const ulong XolRegionSize = 64 * 1024;

    public AddressSpace(ProcessMemory memory) => Memory = memory;

    public ProcessMemory Memory { get; private set; }
    public Dictionary<ulong, Site> Sites { get; } = [];
    public List<XolRegion> Xol { get; } = [];
    /// <summary>Address of a syscall instruction (0f 05) in the target, for injected syscalls; 0 until found.</summary>
    public ulong SyscallInstruction { get; set; }
    /// <summary>Mappings already scanned for probes: (file, start address), so a rescan installs only what is new.</summary>
    public HashSet<(FileKey, ulong)> Scanned { get; } = [];
    public int Users { get; set; } = 1;
    /// <summary>An int3 in the XOL area that hijacked return addresses point to; 0 until a return probe needs it.</summary>
    public ulong ReturnTrampoline { get; set; }
    /// <summary>
    /// The in-process return trampolines here. A slot holding one is hijacked by a live in-process
    /// frame: a trap-path frame at that slot is a link of a tail-call chain, not abandoned.
    /// </summary>
    public HashSet<ulong> InProcessReturnTrampolines { get; } = [];
    /// <summary>Each return trampoline's int3 for a return it found no entry for, to the trampoline's address.</summary>
    public Dictionary<ulong, ulong> LostReturnTraps { get; } = [];
    /// <summary>The in-process path's thread table and rings here; null until the first patch.</summary>
    public InProcessArea? Area { get; set; }
    /// <summary>
    /// Set when a site that may want the in-process patch is placed (or gains a probe); cleared once a
    /// promotion finds none left. Every trap checks it, so no trap walks the sites for nothing.
    /// </summary>
    public bool PatchesMayBePending { get; set; }
    /// <summary>The int3 inside each guarded hook trampoline, by address: a stop there is that hook's event.</summary>
    public Dictionary<ulong, Site> HookTraps { get; } = [];

    public AddressSpace CloneFor(ProcessMemory childMemory)
    {
        var copy = new AddressSpace(childMemory)
        {
            SyscallInstruction = SyscallInstruction, ReturnTrampoline = ReturnTrampoline, PatchesMayBePending = PatchesMayBePending,
        };
        foreach (var (addr, site) in Sites)
        {
            var s = new Site
            {
                Address = site.Address, Original = site.Original, File = site.File, FileOffset = site.FileOffset,
                Kind = site.Kind, Plan = site.Plan, Slot = site.Slot, Removed = site.Removed,
                Patch = site.Patch, FlagsLive = site.FlagsLive, Promoted = site.Promoted, Stale = site.Stale,
            };
            s.Probes.AddRange(site.Probes);
            copy.Sites[addr] = s;
        }
        foreach (XolRegion r in Xol) copy.Xol.Add(new XolRegion(r.Start, r.Size) { Used = r.Used });
        foreach (var (trap, site) in HookTraps) copy.HookTraps[trap] = copy.Sites.GetValueOrDefault(site.Address, site);
        foreach (var k in Scanned) copy.Scanned.Add(k);
        copy.InProcessReturnTrampolines.UnionWith(InProcessReturnTrampolines);
        foreach (var (trap, trampoline) in LostReturnTraps) copy.LostReturnTraps[trap] = trampoline;
        return copy;
    }

    /// <summary>
    /// Reads code as the program sees it without our patches: our int3 bytes are replaced by the
    /// originals, so planning one site is not confused by a neighbouring patched site.
    /// </summary>
    public byte[] ReadOriginalCode(ulong address, int length)
    {
        var buffer = new byte[length];
        int got = length;
        while (got > 0 && !Memory.TryRead(address, buffer.AsSpan(0, got))) got--;
        Array.Resize(ref buffer, got);
        // A patch covers at most JumpLength bytes, so byte i can only be one of the sites at i-4..i.
        for (int i = 0; i < buffer.Length; i++)
        {
            for (int k = 0; k < PatchSiteAnalyzer.JumpLength && (ulong)k <= address + (ulong)i; k++)
            {
                if (Sites.TryGetValue(address + (ulong)(i - k), out Site? s) && !s.Removed && k < s.PatchedLength)
                {
                    buffer[i] = s.Original[k];
                    break;
                }
            }
        }
        return buffer;
    }

    /// <summary>A free slot within +-2 GB of <paramref name="near"/> in an existing region, or 0.</summary>
    public ulong TryTakeSlot(ulong near)
    {
        foreach (XolRegion r in Xol)
        {
            if (r.Used + TrapPlanner.SlotSize > r.Size) continue;
            ulong slot = r.Start + r.Used;
            if (Distance(slot, near) >= (1UL << 31) - 4096) continue;
            r.Used += TrapPlanner.SlotSize;
            return slot;
        }
        return 0;
    }

    /// <summary><paramref name="size"/> free bytes (16-aligned) within +-2 GB of <paramref name="near"/>, or 0.</summary>
    public ulong TryTakeSpace(ulong near, int size)
    {
        foreach (XolRegion r in Xol)
        {
            ulong start = (r.Start + r.Used + 15) & ~15UL;
            if (start + (ulong)size > r.Start + r.Size) continue;
            if (Distance(start, near) >= (1UL << 31) - (ulong)size - 4096) continue;
            r.Used = start + (ulong)size - r.Start;
            return start;
        }
        return 0;
    }

    public static ulong Distance(ulong a, ulong b) => a > b ? a - b : b - a;

    /// <summary>
    /// Picks a free, page-aligned range for a new XOL region near <paramref name="near"/>: just below the
    /// lowest mapping of the module (the heap grows up from the executable's end; leave that alone).
    /// </summary>
    public static IEnumerable<ulong> CandidateXolAddresses(IReadOnlyList<MapEntry> maps, ulong near)
    {
        var sorted = maps.OrderBy(m => m.Start).ToList();
        const ulong minAddress = 0x10000;
        // Walk the gaps below `near`, closest first, then above.
        for (int i = sorted.Count - 1; i >= 0; i--)
        {
            ulong gapEnd = sorted[i].Start;
            ulong gapStart = i > 0 ? sorted[i - 1].End : minAddress;
            if (gapEnd > near || gapEnd <= gapStart) continue;
            if (gapEnd - gapStart < XolRegionSize + 2 * 4096) continue;
            ulong candidate = (gapEnd - XolRegionSize - 4096) & ~0xfffUL;
            if (Distance(candidate, near) < (1UL << 31) - XolRegionSize) yield return candidate;
        }
        for (int i = 0; i < sorted.Count; i++)
        {
            ulong gapStart = sorted[i].End;
            ulong gapEnd = i + 1 < sorted.Count ? sorted[i + 1].Start : 0x7ff000000000UL;
            if (gapStart < near || gapEnd <= gapStart) continue;
            if (gapEnd - gapStart < XolRegionSize + 2 * 4096 + (1UL << 24)) continue;
            // Leave 16 MiB after the mapping for brk growth when this is the program's end.
            ulong candidate = (gapStart + (1UL << 24)) & ~0xfffUL;
            if (Distance(candidate, near) < (1UL << 31) - XolRegionSize) yield return candidate;
        }
    }

    public void Dispose()
    {
        if (--Users <= 0) Memory.Dispose();
    }
}
