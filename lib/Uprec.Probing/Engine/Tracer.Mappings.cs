using Uprec.Filters;
using Uprec.Native;
using Uprec.Probing.Arch;
using Uprec.Symbols;

namespace Uprec.Probing.Engine;

/// <summary>Exec, mappings and placing probes: probes follow the file into every image that maps it.</summary>
internal sealed partial class Tracer
{
    // ---------------------------------------------------------------- exec and mappings

    private void OnExec(TracedTask task)
    {
        TracedProcess process = task.Process;
        int former = (int)Sys.GetEventMsg(task.Tid);
        // After exec only the thread group leader is left; the others vanish without a further report
        // we can rely on, so forget them now (their late exit notifications are ignored).
        foreach (TracedTask other in process.Tasks.Values.ToList())
        {
            if (other.Tid == process.Pid) continue;
            RememberTask(other);
            process.Tasks.Remove(other.Tid);
            _tasks.Remove(other.Tid);
        }
        if (former != process.Pid && !_tasks.ContainsKey(process.Pid))
        {
            _tasks.Remove(former);
            AddTask(process, process.Pid);
        }
        ReleaseAddressSpace(process);
        process.Mm = new AddressSpace(new ProcessMemory(process.Pid));
        process.LoaderHooked = false;
        process.Wants.Clear();
        process.DecidedComm = null;
        process.Exe = ReadLink($"/proc/{process.Pid}/exe");
        if (_tasks.TryGetValue(process.Pid, out TracedTask? leader))
        {
            leader.Frames.Clear();
            leader.RestoredInProcess.Clear();
            leader.Comm = ReadComm(process.Pid);
            RememberTask(leader);
        }
        if (!process.Accepted) process.Accepted = IsWorkloadImage(process);
        if (process.Accepted && !_ending) ScanMappings(process);
    }

    /// <summary>
    /// The first exec may be the gate shell's own (posix_spawn can return before it): the workload is
    /// the image that is the program, or anything that is not the shell, or the second exec in any case.
    /// </summary>
    /// <summary>
    /// Whether an exec is the workload's rather than the gate shell's own. posix_spawn may return, and
    /// uprec seize the child, before or after the shell's exec is reported, so neither counting execs
    /// nor the image helps (a #!/bin/sh workload runs /bin/sh too); the new image's argv does: the gate
    /// runs with the gate script as its -c argument, which no workload has.
    /// </summary>
    private static bool IsWorkloadImage(TracedProcess process)
    {
        try
        {
            string cmdline = File.ReadAllText($"/proc/{process.Pid}/cmdline");
            return !cmdline.Contains(Launcher.GateScript, StringComparison.Ordinal);
        }
        catch (IOException) { return true; }
    }

    private static string? ReadLink(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Places the probes of every newly mapped probed file, and the loader hook.</summary>
    private void ScanMappings(TracedProcess process)
    {
        IReadOnlyList<MapEntry> maps = ReadMaps(process);
        if (maps.Count == 0) return; // unreadable now: never take that for "everything was unmapped"
        AddressSpace mm = process.Mm;
        ForgetUnmapped(mm, maps);
        foreach (MapEntry m in maps)
        {
            if (!m.Executable || m.Path is null || m.Inode == 0) continue;
            var key = FileKey.Of(m);
            if (!mm.Scanned.Add((key, m.Start))) continue;
            FileProbes? file = _catalog.ForMapping(m);
            if (file is not null)
            {
                foreach (FileSite fs in file.Sites)
                {
                    if (fs.FileOffset < (long)m.Offset || fs.FileOffset >= (long)m.Offset + (long)(m.End - m.Start)) continue;
                    ulong addr = m.Start + (ulong)(fs.FileOffset - (long)m.Offset);
                    if (Wants(process, fs.Probe) == FilterDecision.No) continue;
                    Install(mm, addr, key, fs.FileOffset, file.Image, fs.Probe, SiteKind.Probe, fs);
                }
            }
            if (HasReturnProbes) HookUnwinder(mm, m, key);
            if (InProcessPossible) HookExec(mm, m, key);
            if (!process.LoaderHooked && IsInterpreter(process, key, m.Path, out ElfImage? ld))
            {
                ElfSymbol? hook = ld!.FindSymbol("_dl_debug_state");
                long? off = hook is null ? null : ld.VaddrToFileOffset(hook.Value);
                if (off is long o && o >= (long)m.Offset && o < (long)m.Offset + (long)(m.End - m.Start))
                {
                    Install(mm, m.Start + (ulong)(o - (long)m.Offset), key, o, ld, null, SiteKind.Loader, hookSize: hook!.Size);
                    process.LoaderHooked = true;
                }
            }
        }
    }

    /// <summary>wants_probe: whether this process's image should carry the probe at all, decided once per image.</summary>
    private static FilterDecision Wants(TracedProcess process, Probe probe)
    {
        if (probe.Filter is null) return FilterDecision.Yes;
        if (process.Wants.TryGetValue(probe.Id, out FilterDecision d)) return d;
        ProcStatus? status = ProcStatus.Read(process.Pid);
        if (status is not null) process.Uid = status.Uid;
        process.DecidedComm ??= ReadComm(process.Pid);
        d = HitFields.DecideForProcess(probe.Filter, process, status, process.DecidedComm);
        process.Wants[probe.Id] = d;
        if (d == FilterDecision.No && !probe.Installed) probe.Note = "no traced process matched its filter";
        return d;
    }

    /// <summary>
    /// A forked child inherited every patch of its parent; those of probes the child does not want
    /// are taken out of the child alone (its pages are its own copy).
    /// </summary>
    private static void DropUnwanted(TracedProcess child)
    {
        foreach (Site site in child.Mm.Sites.Values)
        {
            if (site.Removed || site.Kind != SiteKind.Probe || site.Probes.Count == 0) continue;
            site.Probes.RemoveAll(p => Wants(child, p) == FilterDecision.No);
            if (site.Probes.Count > 0) continue;
            child.Mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, site.PatchedLength));
            site.Removed = true;
        }
    }

    /// <summary>
    /// After dlclose the library's pages are gone, and with them our patches: forget those sites (there
    /// is nothing to restore), so that a later load, at the same address or another, is patched afresh.
    /// </summary>
    private static void ForgetUnmapped(AddressSpace mm, IReadOnlyList<MapEntry> maps)
    {
        var live = maps.Where(m => m.Executable && m.Inode != 0).ToList();
        mm.Scanned.RemoveWhere(k => !live.Any(m => FileKey.Of(m) == k.Item1 && m.Start == k.Item2));
        foreach (Site site in mm.Sites.Values.ToList())
        {
            if (site.Removed || site.Kind == SiteKind.Loader) continue;
            bool mapped = live.Any(m => FileKey.Of(m) == site.File && site.Address >= m.Start && site.Address < m.End);
            if (!mapped) mm.Sites.Remove(site.Address);
        }
    }

    private readonly Dictionary<FileKey, ElfImage?> _hookImages = [];

    /// <summary>
    /// libc, libgcc_s or libstdc++ read once per file for uprec's own hooks, not again in every process
    /// that maps it (each exec'd program does); null when it cannot be read.
    /// </summary>
    private ElfImage? HookImage(FileKey key, string path)
    {
        if (_hookImages.TryGetValue(key, out ElfImage? image)) return image;
        try { image = ElfImage.Load(path); }
        catch (SymbolException) { image = null; }
        _hookImages[key] = image;
        return image;
    }

    private bool IsInterpreter(TracedProcess process, FileKey key, string path, out ElfImage? image)
    {
        if (!_interpreters.TryGetValue(key, out image))
        {
            image = null;
            // The dynamic loader is the only mapped file that is its own interpreter target: ld-linux*.
            if (Path.GetFileName(path).StartsWith("ld-", StringComparison.Ordinal))
            {
                try { image = ElfImage.Load(path); }
                catch (SymbolException) { image = null; }
            }
            _interpreters[key] = image;
        }
        return image is not null;
    }

    /// <summary>
    /// The maps through a live thread: /proc/PID/maps of a leader that called pthread_exit reads as
    /// empty while its other threads run on.
    /// </summary>
    private static IReadOnlyList<MapEntry> ReadMaps(TracedProcess process)
    {
        foreach (int tid in process.Tasks.Keys.Prepend(process.Pid).Distinct())
        {
            try
            {
                var maps = ProcMaps.Parse(File.ReadAllText($"/proc/{process.Pid}/task/{tid}/maps"));
                if (maps.Count > 0) return maps;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return [];
    }

    /// <summary>
    /// An internal breakpoint at an address known only at run time (where a call returns to); the
    /// file behind it is looked up in the maps. False when it cannot be placed.
    /// </summary>
    private bool InstallInternal(TracedProcess process, ulong addr, SiteKind kind)
    {
        AddressSpace mm = process.Mm;
        if (mm.Sites.TryGetValue(addr, out Site? existing) && !existing.Removed) return existing.Kind == kind;
        MapEntry? m = ReadMaps(process).FirstOrDefault(e => e.Executable && e.Inode != 0 && addr >= e.Start && addr < e.End);
        if (m is null) return false;
        Install(mm, addr, FileKey.Of(m), (long)(m.Offset + (addr - m.Start)), null, null, kind);
        return mm.Sites.TryGetValue(addr, out Site? placed) && !placed.Removed && placed.Kind == kind;
    }

    /// <summary>Writes int3 at a site (or adds a consumer to the one already there).</summary>
    private void Install(AddressSpace mm, ulong addr, FileKey key, long fileOffset, ElfImage? image, Probe? probe, SiteKind kind,
        FileSite? fileSite = null, ulong hookSize = 0)
    {
        if (mm.Sites.TryGetValue(addr, out Site? existing))
        {
            if (!existing.Removed)
            {
                if (probe is not null && !existing.Probes.Contains(probe)) AddToSite(mm, existing, probe);
                else if (kind != SiteKind.Probe && existing.Kind == SiteKind.Probe) MakeInternal(existing, kind);
                return;
            }
            mm.Sites.Remove(addr); // taken out earlier (a filter said no); placed afresh below
        }
        byte[] code = mm.ReadOriginalCode(addr, 16);
        byte[] fileBytes = image?.ReadBytes(fileOffset, Math.Min(code.Length, 16)) ?? code;
        if (code.Length == 0 || !code.AsSpan(0, fileBytes.Length).SequenceEqual(fileBytes))
        {
            // Someone else (a debugger, a self-modifying program) changed this code: never patch over it.
            if (probe is not null) probe.Note = $"code at 0x{addr:x} differs from the file; not patched";
            return;
        }
        // The in-process path, if the probe and the function allow it; else the trap path, with the reason.
        PatchablePlan? patch = null;
        string? trapWhy = null;
        if (probe is not null && kind == SiteKind.Probe)
        {
            patch = PlanPatch(mm, addr, fileSite, image, probe, out trapWhy);
            if (patch is null && HitPath == HitPathMode.InProcess)
            {
                probe.Note = $"not placed: cannot take the in-process path ({trapWhy})";
                return;
            }
        }
        if (kind is SiteKind.Loader or SiteKind.Exec or SiteKind.Unwind or SiteKind.Catch or SiteKind.Backtrace)
            patch = PlanHookPatch(mm, addr, code, hookSize);
        // Decide now whether the trap path can handle the instruction; the real slot comes at the first hit.
        TrapPlan plan = TrapPlanner.Plan(code, addr, addr);
        // (A site that is patched in process is an int3 until its first trap, so it needs a trap plan too.)
        if (plan is UnsupportedPlan u)
        {
            if (probe is not null) probe.Note = $"cannot probe '{plan.Instruction}': {u.Reason}";
            return;
        }
        if (!mm.Memory.TryWrite(addr, [0xCC]))
        {
            if (probe is not null) probe.Note = $"cannot write at 0x{addr:x}: {Errno.Describe(Errno.Last)}";
            return;
        }
        var site = new Site
        {
            Address = addr, Original = code, File = key, FileOffset = fileOffset, Kind = kind,
            Plan = plan is EmulatePlan ? plan : null,
            Patch = patch,
            FlagsLive = patch is null || TrampolineBuilder.FlagsMayBeLive(FunctionFrom(mm, addr, fileSite), addr),
        };
        if (probe is not null)
        {
            site.Probes.Add(probe);
            probe.Installed = true;
            if (probe.HitPath != "inprocess") probe.HitPath = "trap";
            if (patch is null) probe.Note ??= trapWhy;
        }
        mm.Sites[addr] = site;
        if (patch is not null) mm.PatchesMayBePending = true;
    }

    /// <summary>
    /// One of uprec's own hooks (execve, the loader, the unwinder) lands on a user probe's site: the site
    /// must stop there (it stays an int3), and both are served by that stop. Hooks are placed in the same
    /// scan as the probes of their file, before any promotion, so the site is still an int3 here.
    /// </summary>
    private void MakeInternal(Site site, SiteKind kind)
    {
        if (site.Promoted)
        {
            _log.Warn($"uprec's {kind} hook at 0x{site.Address:x} shares a site already patched in process; the hook is not placed");
            return;
        }
        site.Kind = kind;
        site.Patch = null;
        foreach (Probe p in site.Probes) p.Note ??= $"its site is also uprec's {kind.ToString().ToLowerInvariant()} hook, which needs a stop";
    }

    /// <summary>The probed function's original code from the site to its end.</summary>
    private static byte[] FunctionFrom(AddressSpace mm, ulong addr, FileSite? fileSite)
    {
        if (fileSite is null) return [];
        long end = fileSite.FunctionFileOffset + (long)fileSite.FunctionSize;
        return mm.ReadOriginalCode(addr, (int)Math.Clamp(end - fileSite.FileOffset, 0, 4096));
    }

    /// <summary>
    /// A second probe on a placed site. The site stays in process only if the newcomer can be served
    /// there too; a site already patched gets a new trampoline at the next trap (until then the
    /// newcomer's hits are not seen, which is why a probe that cannot go in process is refused there).
    /// </summary>
    private void AddToSite(AddressSpace mm, Site site, Probe probe)
    {
        string? why = site.Patch is null ? null : InProcessRefusal(probe);
        if (why is not null && site.Promoted)
        {
            probe.Note = $"not placed at 0x{site.Address:x}: the site is patched in process and {why}";
            return;
        }
        if (why is not null)
        {
            site.Patch = null;
            foreach (Probe other in site.Probes) other.Note ??= $"shares its site with '{probe.Name}', which takes the trap path";
        }
        else if (site.Patch is null && site.Kind == SiteKind.Probe)
        {
            probe.Note ??= $"shares its site with '{site.Probes.FirstOrDefault()?.Name}', which takes the trap path";
        }
        else if (site.Kind != SiteKind.Probe)
        {
            probe.Note ??= $"its site is also uprec's {site.Kind.ToString().ToLowerInvariant()} hook, which needs a stop";
        }
        site.Probes.Add(probe);
        probe.Installed = true;
        if (probe.HitPath != "inprocess") probe.HitPath = "trap";
        if (site.Promoted) site.Stale = true;
        if (site.NeedsPatch) mm.PatchesMayBePending = true;
    }
}
