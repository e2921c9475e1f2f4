using Uprec.Native;
using Uprec.Symbols;
using Uprec.Trace;
using Uprec.Probing.Arch;
using L = Uprec.Probing.Arch.InProcessLayout;

namespace Uprec.Probing.Engine;

/// <summary>A call of a %return probe in flight: its return address was replaced by the trampoline's.</summary>
internal sealed class ReturnFrame(ulong slot, ulong originalReturn, List<Probe> probes, long entryNs, bool tailCall = false)
{
    /// <summary>Entered by a tail call from the frame before it, sharing its slot: they return together.</summary>
    public bool TailCall { get; } = tailCall;
    /// <summary>Where on the stack the return address lives (rsp at the function's entry).</summary>
    public ulong Slot { get; } = slot;
    public ulong OriginalReturn { get; } = originalReturn;
    public List<Probe> Probes { get; } = probes;
    public long EntryNs { get; } = entryNs;
    /// <summary>The original return address was put back for an unwinder; not hijacked right now.</summary>
    public bool Restored { get; set; }

    public ReturnFrame Copy() => new(Slot, OriginalReturn, Probes, EntryNs, TailCall) { Restored = Restored };
}

/// <summary>A %return call in flight on the in-process path, as its thread's shadow stack in the target holds it (InProcessLayout).</summary>
internal readonly record struct ShadowEntry(ulong Slot, ulong Original, ulong Tsc, ulong Trampoline);

/// <summary>
/// Return probes on the trap path. At a probed entry the return address on the stack is replaced by
/// the address of an int3 in the XOL area (the kernel's uretprobe way) and remembered in a per-thread
/// shadow stack; the int3 stop is the return. What keeps programs working:
/// <list type="bullet">
/// <item>longjmp and unwinding skip frames: a return matches the shadow frame whose stack slot it
/// pops, and frames pushed after that one are dropped (they can never return).</item>
/// <item>C++ exceptions: the unwinder must see real return addresses, so at the entry of
/// _Unwind_RaiseException / _Unwind_Resume_or_Rethrow / _Unwind_ForcedUnwind / _Unwind_Backtrace the
/// thread's hijacked slots get their original addresses back, and at __cxa_begin_catch frames below
/// the handler are dropped and those still live are hijacked again (uftrace's libmcount/wrap.c).</item>
/// <item>a tail call from one probed function into another reuses the slot: both frames end at the
/// one return.</item>
/// <item>detaching puts every original return address back before the thread runs untraced.</item>
/// </list>
/// </summary>
internal sealed partial class Tracer
{
    private static readonly string[] UnwindEntries =
        ["_Unwind_RaiseException", "_Unwind_Resume_or_Rethrow", "_Unwind_ForcedUnwind"];

    /// <summary>Shadow stacks deeper than this are checked for frames that longjmp left behind.</summary>
    private const int ShadowStackCheckDepth = 256;

    private bool HasReturnProbes => _catalog.Probes.Any(p => p.Spec.IsReturn);

    /// <summary>Places the unwinder hooks when the C++ runtime libraries are mapped (only if return probes exist).</summary>
    private void HookUnwinder(AddressSpace mm, MapEntry m, FileKey key)
    {
        string name = Path.GetFileName(m.Path!);
        bool gcc = name.StartsWith("libgcc_s.so", StringComparison.Ordinal);
        bool cxx = name.StartsWith("libstdc++.so", StringComparison.Ordinal);
        if (!gcc && !cxx) return;
        if (HookImage(key, m.Path!) is not ElfImage image) return;
        IEnumerable<(string Name, SiteKind Kind)> hooks = gcc
            ? UnwindEntries.Select(n => (n, SiteKind.Unwind)).Append(("_Unwind_Backtrace", SiteKind.Backtrace))
            : [("__cxa_begin_catch", SiteKind.Catch)];
        foreach (var (symbol, kind) in hooks)
        {
            ElfSymbol? sym = image.FindSymbol(symbol);
            long? off = sym is null ? null : image.VaddrToFileOffset(sym.Value);
            if (off is not long o || o < (long)m.Offset || o >= (long)m.Offset + (long)(m.End - m.Start)) continue;
            Install(mm, m.Start + (ulong)(o - (long)m.Offset), key, o, image, null, kind, hookSize: sym!.Size);
        }
    }

    /// <summary>The XOL int3 that hijacked returns come back to; one per address space.</summary>
    private ulong ReturnTrampoline(TracedTask task, ulong near)
    {
        AddressSpace mm = task.Process.Mm;
        if (mm.ReturnTrampoline != 0) return mm.ReturnTrampoline;
        ulong slot = mm.TryTakeSlot(near);
        if (slot == 0)
        {
            MapXolRegion(task, near);
            slot = mm.TryTakeSlot(near);
        }
        mm.Memory.Write(slot, [0xCC]);
        mm.ReturnTrampoline = slot;
        return slot;
    }

    /// <summary>At a probed entry (rip at the function's first byte, rsp at the return address): hijack it.</summary>
    private void HijackReturn(TracedTask task, Site site, List<Probe> probes, ulong rsp, long now)
    {
        AddressSpace mm = task.Process.Mm;
        ulong trampoline = ReturnTrampoline(task, site.Address);
        Span<byte> word = stackalloc byte[8];
        if (!mm.Memory.TryRead(rsp, word)) return;
        ulong original = BitConverter.ToUInt64(word);
        bool tailCall = original == trampoline;
        if (tailCall)
        {
            // Entered by a tail call from a probed function: it returns where that one would have.
            ReturnFrame? caller = task.Frames.LastOrDefault(f => f.Slot == rsp && !f.Restored);
            if (caller is null) return;
            original = caller.OriginalReturn;
        }
        else
        {
            BitConverter.TryWriteBytes(word, trampoline);
            if (!mm.Memory.TryWrite(rsp, word)) return;
            // The slot held a real return address, so frames hijacked at this slot before were abandoned
            // (longjmp, unwinding): their return can no longer come through it. Unless it held an
            // in-process return trampoline: a chain of tail calls through both paths, where the frames
            // before still return, one after the other.
            if (!mm.InProcessReturnTrampolines.Contains(original)) task.Frames.RemoveAll(f => f.Slot == rsp);
        }
        if (task.Frames.Count >= ShadowStackCheckDepth) DropAbandonedFrames(task, trampoline);
        task.Frames.Add(new ReturnFrame(rsp, original, probes, now, tailCall));
    }

    /// <summary>
    /// Frames left by longjmp or unwinding still sit in the shadow stack until a shallower frame returns.
    /// A frame whose stack slot no longer holds the trampoline address cannot return through it: drop it.
    /// </summary>
    private static void DropAbandonedFrames(TracedTask task, ulong trampoline)
    {
        task.Frames.RemoveAll(f => f.Restored || !StillHijacked(task.Process.Mm, f.Slot, trampoline));
    }

    /// <summary>Whether a trap-path frame's slot still leads back to it: it holds the trampoline, or an in-process one chained before it.</summary>
    private static bool StillHijacked(AddressSpace mm, ulong slot, ulong trampoline) =>
        ReadWord(mm.Memory, slot) is ulong held && (held == trampoline || mm.InProcessReturnTrampolines.Contains(held));

    /// <summary>The trampoline's int3: a probed call returned. Record it and continue at the real return address.</summary>
    private void OnReturn(TracedTask task, long now, bool resume)
    {
        user_regs_struct regs = Sys.GetRegs(task.Tid);
        ulong slot = regs.rsp - 8;
        int last = task.Frames.FindLastIndex(f => f.Slot == slot && !f.Restored);
        if (last < 0)
        {
            // Every hijack is recorded before the thread runs on, so this means our bookkeeping is wrong;
            // the thread cannot be continued correctly. Fail loudly rather than guess.
            throw new InvalidOperationException($"task {task.Tid} returned through the trampoline with no matching frame (rsp 0x{regs.rsp:x})");
        }
        // A frame entered by tail call ends with the frame it replaced; a stale frame that merely has
        // the same slot (left by longjmp) does not.
        int first = last;
        while (first > 0 && task.Frames[first].TailCall && task.Frames[first - 1].Slot == slot && !task.Frames[first - 1].Restored) first--;
        task.Comm ??= ReadComm(task.Tid) ?? "";
        for (int i = last; i >= first; i--)
        {
            ReturnFrame frame = task.Frames[i];
            foreach (Probe p in frame.Probes)
            {
                var hit = new HitRecord
                {
                    TimeNs = now, Pid = task.Process.Pid, Tid = task.Tid, ProbeId = p.Id, Kind = HitKind.Return,
                    DurationNs = now - frame.EntryNs, Comm = task.Comm,
                };
                var values = new object?[p.Spec.Args.Count + 1];
                values[^1] = (long)regs.rax;
                hit.Args = values;
                using (_sinkLock.Enter()) _writer.Append(in hit);
            }
        }
        regs.rip = task.Frames[first].OriginalReturn;
        // Frames pushed after the returning ones were skipped by longjmp or unwinding, unless they live on
        // another stack (coroutines, a signal's alternate stack): those still hold the trampoline address.
        ulong trampoline = task.Process.Mm.ReturnTrampoline;
        ProcessMemory memory = task.Process.Mm.Memory;
        var later = task.Frames.GetRange(last + 1, task.Frames.Count - last - 1)
            .Where(f => !f.Restored && StillHijacked(task.Process.Mm, f.Slot, trampoline)).ToList();
        task.Frames.RemoveRange(first, task.Frames.Count - first);
        task.Frames.AddRange(later);
        Sys.SetRegs(task.Tid, regs);
        if (resume) Resume(task, 0);
    }

    /// <summary>
    /// An unwinder is about to walk this thread's stack: give it the real return addresses, of both
    /// paths' frames. A slot holds a frame's trampoline only once every frame hijacked after it at the
    /// same slot (a tail call, maybe on the other path) has put its original back: newest first,
    /// until nothing changes. Only slots are written, never the thread's shadow stack: the thread may
    /// be in a signal handler that interrupted one of its own trampolines, which holds indices into
    /// that stack. A restored entry stays where it is (its frame now returns directly, so it is stale
    /// until a return or a cleanup takes it out), and uprec remembers it for the catch (or the
    /// backtrace's return) that hijacks the live ones again.
    /// </summary>
    private void RestoreReturnAddresses(TracedTask task, bool detaching = false)
    {
        Span<byte> word = stackalloc byte[8];
        ulong trampoline = task.Process.Mm.ReturnTrampoline;
        ProcessMemory memory = task.Process.Mm.Memory;
        ThreadBlock? block = ShadowBlock(task);
        List<ShadowEntry> shadow = block is null ? [] : ReadShadow(memory, block);
        var restored = new bool[shadow.Count];
        for (bool changed = true; changed; )
        {
            changed = false;
            for (int i = task.Frames.Count - 1; i >= 0; i--)
            {
                ReturnFrame f = task.Frames[i];
                if (f.Restored || trampoline == 0 || ReadWord(memory, f.Slot) != trampoline) continue;
                BitConverter.TryWriteBytes(word, f.OriginalReturn);
                if (memory.TryWrite(f.Slot, word)) f.Restored = changed = true;
            }
            for (int i = shadow.Count - 1; i >= 0; i--)
            {
                if (restored[i] || ReadWord(memory, shadow[i].Slot) != shadow[i].Trampoline) continue;
                BitConverter.TryWriteBytes(word, shadow[i].Original);
                if (memory.TryWrite(shadow[i].Slot, word)) restored[i] = changed = true;
            }
        }
        // A slot that no longer holds the trampoline belongs to a frame longjmp abandoned; its memory
        // may be the program's data by now, so it is never written: the frame is just dropped.
        task.Frames.RemoveAll(f => !f.Restored);
        if (detaching) return;
        for (int i = 0; i < shadow.Count; i++)
        {
            if (restored[i]) task.RestoredInProcess.Add(shadow[i]);
        }
    }

    /// <summary>
    /// A handler caught the exception: frames below it are gone; hijack the live ones again, oldest
    /// first (the mirror of the restore). An in-process entry is hijacked again only if it is still on
    /// the thread's shadow stack: a cleanup may have dropped it, and a return with no entry is lost.
    /// </summary>
    /// <param name="rsp">rsp at __cxa_begin_catch's entry (or where the backtrace returned).</param>
    private void RehijackAfterCatch(TracedTask task, ulong rsp)
    {
        ulong trampoline = task.Process.Mm.ReturnTrampoline;
        ProcessMemory memory = task.Process.Mm.Memory;
        task.Frames.RemoveAll(f => f.Slot < rsp);
        ThreadBlock? block = task.RestoredInProcess.Count == 0 ? null : ShadowBlock(task);
        var present = block is null ? [] : ReadShadow(memory, block).ToHashSet();
        List<ShadowEntry> waiting = task.RestoredInProcess.Where(e => e.Slot >= rsp && present.Contains(e)).ToList();
        task.RestoredInProcess.Clear();
        var again = new bool[waiting.Count];
        Span<byte> word = stackalloc byte[8];
        for (bool changed = true; changed; )
        {
            changed = false;
            foreach (ReturnFrame f in task.Frames)
            {
                // Only if the slot still holds the address we put back: otherwise the frame is not what we think.
                if (!f.Restored || trampoline == 0 || ReadWord(memory, f.Slot) != f.OriginalReturn) continue;
                BitConverter.TryWriteBytes(word, trampoline);
                if (memory.TryWrite(f.Slot, word)) { f.Restored = false; changed = true; }
            }
            for (int i = 0; i < waiting.Count; i++)
            {
                if (again[i] || ReadWord(memory, waiting[i].Slot) != waiting[i].Original) continue;
                BitConverter.TryWriteBytes(word, waiting[i].Trampoline);
                if (memory.TryWrite(waiting[i].Slot, word)) again[i] = changed = true;
            }
        }
        task.Frames.RemoveAll(f => f.Restored);
    }

    /// <summary>
    /// The entry trampoline found the thread's shadow stack full and stopped to ask: drop the entries
    /// of frames that can no longer return through their trampoline (longjmp skipped them; a new call
    /// wrote over their slot). Per slot, newest first: the newest live frame's trampoline is what the
    /// slot holds, and an older one is live only if a live newer one returns into its trampoline (a
    /// tail call; trap-path frames at the slot may be links of that chain). So repeated longjmps out
    /// of the same call chain, which leave many entries for one slot, keep at most the true one.
    /// </summary>
    private void DropAbandonedShadowEntries(TracedTask task)
    {
        if (ShadowBlock(task) is not ThreadBlock block) return;
        ProcessMemory memory = task.Process.Mm.Memory;
        ulong trampoline = task.Process.Mm.ReturnTrampoline;
        List<ShadowEntry> shadow = ReadShadow(memory, block);
        var live = new bool[shadow.Count];
        var expected = new Dictionary<ulong, ulong>();
        var trapChain = task.Frames.Where(f => !f.Restored).GroupBy(f => f.Slot)
            .ToDictionary(g => g.Key, g => new Stack<ReturnFrame>(g));
        for (int i = shadow.Count - 1; i >= 0; i--)
        {
            ShadowEntry e = shadow[i];
            if (!expected.TryGetValue(e.Slot, out ulong holds)) holds = ReadWord(memory, e.Slot) ?? 0;
            while (trampoline != 0 && holds == trampoline && trapChain.TryGetValue(e.Slot, out var chain) && chain.Count > 0)
                holds = chain.Pop().OriginalReturn;
            if (holds == e.Trampoline)
            {
                live[i] = true;
                holds = e.Original;
            }
            expected[e.Slot] = holds;
        }
        WriteShadow(memory, block, shadow.Where((_, i) => live[i]).ToList());
    }

    /// <summary>
    /// A return trampoline found no entry for its slot on the thread's own shadow stack, and stopped.
    /// The call began on another thread: a fiber or coroutine that a scheduler moved between threads
    /// carries its stack, not its shadow entries. The newest entry for this slot and trampoline on
    /// any thread's shadow stack has the return address: the trampoline's saved registers are put
    /// back and the thread goes there (untimed; the entry stays, stale, on the other stack).
    /// </summary>
    /// <returns>False when no entry is found: nothing can say where the call returns to.</returns>
    private bool RescueLostReturn(TracedTask task, ulong returnTrampoline)
    {
        AddressSpace mm = task.Process.Mm;
        if (mm.Area is not InProcessArea area) return false;
        user_regs_struct regs = Sys.GetRegs(task.Tid);
        ulong slot = regs.rsp + (ulong)TrampolineBuilder.ReturnFrameLayout.SlotOffset;
        ulong? original = null;
        ulong newest = 0;
        foreach (ThreadBlock b in area.Blocks)
        {
            List<ShadowEntry> shadow = ReadShadow(mm.Memory, b);
            for (int i = shadow.Count - 1; i >= 0; i--)
            {
                ShadowEntry e = shadow[i];
                if (e.Slot != slot || e.Trampoline != returnTrampoline || (original is not null && e.Tsc < newest)) continue;
                // A tail call into this function returns where its caller's frame would: follow the
                // chain of entries for the same slot down this stack to a real address.
                ulong target = e.Original;
                for (int j = i - 1; j >= 0 && mm.InProcessReturnTrampolines.Contains(target); j--)
                {
                    if (shadow[j].Slot == slot && shadow[j].Trampoline == target) target = shadow[j].Original;
                }
                (original, newest) = (target, e.Tsc);
                break;
            }
        }
        if (original is not ulong found || mm.InProcessReturnTrampolines.Contains(found) || found == mm.ReturnTrampoline)
        {
            _log.Warn($"task {task.Tid} returned through a return trampoline with no entry for its stack slot 0x{slot:x}; the program gets a SIGTRAP");
            return false;
        }
        string[] saved = TrampolineBuilder.ReturnFrameLayout.Registers;
        for (int i = 0; i < saved.Length; i++)
        {
            if (ReadWord(mm.Memory, regs.rsp + (ulong)(i * 8)) is not ulong value) return false;
            switch (saved[i])
            {
                case "r9": regs.r9 = value; break;
                case "r8": regs.r8 = value; break;
                case "rdi": regs.rdi = value; break;
                case "rsi": regs.rsi = value; break;
                case "rdx": regs.rdx = value; break;
                case "rcx": regs.rcx = value; break;
                case "rax": regs.rax = value; break;
            }
        }
        // The slot gets the real address, as the trampoline would have written it: the entry left on the
        // other stack no longer matches its slot, so a cleanup drops it.
        mm.Memory.TryWrite(slot, BitConverter.GetBytes(found));
        regs.rsp = slot + 8;
        regs.rip = found;
        Sys.SetRegs(task.Tid, regs);
        return true;
    }

    /// <summary>The shadow stack of the block the thread uses (found by its fs base, as the trampolines find it).</summary>
    private ThreadBlock? ShadowBlock(TracedTask task)
    {
        if (task.Process.Mm.Area is not InProcessArea area) return null;
        return area.ByKey.GetValueOrDefault(Sys.GetRegs(task.Tid).fs_base);
    }

    /// <summary>The entries of a block's shadow stack, oldest first; a depth beyond the stack (scribbled) reads as full.</summary>
    private static List<ShadowEntry> ReadShadow(ProcessMemory memory, ThreadBlock block)
    {
        var entries = new List<ShadowEntry>();
        if (ReadWord(memory, block.Address + L.ShadowDepthOffset) is not ulong depth || depth == 0) return entries;
        int n = (int)Math.Min(depth, L.ShadowEntries);
        var bytes = new byte[n * L.ShadowEntrySize];
        if (!memory.TryRead(block.Address + L.ShadowOffset, bytes)) return entries;
        ReadOnlySpan<ulong> w = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes);
        for (int i = 0; i < n; i++)
            entries.Add(new ShadowEntry(w[i * 4 + 0], w[i * 4 + 1], w[i * 4 + 2], w[i * 4 + 3]));
        return entries;
    }

    /// <summary>Replaces a stopped thread's shadow stack: the entries first, then the depth.</summary>
    private static void WriteShadow(ProcessMemory memory, ThreadBlock block, List<ShadowEntry> entries)
    {
        int n = Math.Min(entries.Count, L.ShadowEntries);
        var w = new ulong[n * 4];
        for (int i = 0; i < n; i++)
        {
            (w[i * 4], w[i * 4 + 1], w[i * 4 + 2], w[i * 4 + 3]) = (entries[i].Slot, entries[i].Original, entries[i].Tsc, entries[i].Trampoline);
        }
        if (n > 0) memory.TryWrite(block.Address + L.ShadowOffset, System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.AsSpan()));
        memory.TryWrite(block.Address + L.ShadowDepthOffset, BitConverter.GetBytes((ulong)n));
    }

    /// <summary>The 8 bytes at <paramref name="address"/>, or null when unreadable.</summary>
    private static ulong? ReadWord(ProcessMemory memory, ulong address)
    {
        Span<byte> word = stackalloc byte[8];
        return memory.TryRead(address, word) ? BitConverter.ToUInt64(word) : null;
    }

    /// <summary>
    /// _Unwind_Backtrace walks the stack and returns (backtrace(), boost::stacktrace): put the real
    /// return addresses back for the walk, and set a one-shot breakpoint where it returns to, at which
    /// the frames still live are hijacked again (uftrace wraps backtrace() for the same reason).
    /// </summary>
    /// <param name="rsp">rsp at _Unwind_Backtrace's entry: it points at the return address.</param>
    private void OnBacktrace(TracedTask task, ulong rsp)
    {
        RestoreReturnAddresses(task);
        if (task.Frames.Count == 0 && task.RestoredInProcess.Count == 0) return;
        if (ReadWord(task.Process.Mm.Memory, rsp) is not ulong back) return;
        if (InstallInternal(task.Process, back, SiteKind.Rehijack)) task.RehijackAt = back;
    }

    /// <summary>The backtrace returned: hijack again the frames it had been given back.</summary>
    private void OnRehijack(TracedTask task, Site site)
    {
        if (task.RehijackAt == site.Address)
        {
            task.RehijackAt = 0;
            RehijackAfterCatch(task, Sys.GetRegs(task.Tid).rsp);
        }
        if (_tasks.Values.Any(t => t.RehijackAt == site.Address)) return;
        // Nobody else is inside a backtrace returning here: the breakpoint goes (this thread then runs
        // the original instruction in place).
        task.Process.Mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, 1));
        site.Removed = true;
    }

    /// <summary>Detach: every hijacked slot gets its original return address back (the program runs on untraced).</summary>
    private void RestoreAllReturnAddresses(IEnumerable<TracedTask> tasks)
    {
        foreach (TracedTask t in tasks)
        {
            // Frames restored for an unwinder or backtrace already hold their original addresses.
            RestoreReturnAddresses(t, detaching: true);
            t.Frames.Clear();
            t.RestoredInProcess.Clear();
        }
    }
}
