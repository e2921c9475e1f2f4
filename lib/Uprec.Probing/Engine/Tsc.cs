using Uprec.Native;

namespace Uprec.Probing.Engine;

/// <summary>
/// Converts the time stamp counter the trampolines read (rdtsc: ~8 ns, no syscall) into the
/// CLOCK_MONOTONIC nanoseconds the trap path records, so both paths share one time axis.
/// .NET has no rdtsc intrinsic, so uprec runs a 10-byte stub of its own; the TSC is invariant and
/// synchronised across CPUs here (constant_tsc, nonstop_tsc), which is what makes one linear map valid.
/// </summary>
internal static unsafe class Tsc
{
    private static readonly delegate* unmanaged<ulong> ReadStub = MakeStub();

    private static delegate* unmanaged<ulong> MakeStub()
    {
        // rdtsc; shl rdx,32; or rax,rdx; ret
        ReadOnlySpan<byte> code = [0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3];
        void* page = Unistd.mmap(null, 4096, Unistd.PROT_READ | Unistd.PROT_WRITE, Unistd.MAP_PRIVATE | Unistd.MAP_ANONYMOUS, -1, 0);
        if (page == (void*)-1) throw new ProbingException($"cannot map memory for the TSC reader: {Errno.Describe(Errno.Last)}");
        code.CopyTo(new Span<byte>(page, code.Length));
        if (Unistd.mprotect(page, 4096, Unistd.PROT_READ | Unistd.PROT_EXEC) != 0)
            throw new ProbingException($"cannot make the TSC reader executable: {Errno.Describe(Errno.Last)}");
        return (delegate* unmanaged<ulong>)page;
    }

    public static ulong Read() => ReadStub();

    /// <summary>A (tsc, ns) pair taken as close together as possible: the tightest of a few tries.</summary>
    public static (ulong Tsc, long Ns) Pair()
    {
        (ulong, long) best = default;
        ulong bestWidth = ulong.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            ulong a = Read();
            long ns = Sys.MonotonicNs();
            ulong b = Read();
            if (b - a < bestWidth)
            {
                bestWidth = b - a;
                best = (a + (b - a) / 2, ns);
            }
        }
        return best;
    }
}

/// <summary>
/// The TSC-to-ns map: a recent anchor pair plus the rate measured since the first pair, so the error
/// of a converted stamp is the rate error times its distance from the anchor (milliseconds), not from
/// the start of the recording.
/// </summary>
internal sealed class TscClock
{
    private readonly (ulong Tsc, long Ns) _origin;
    private (ulong Tsc, long Ns) _anchor;
    private double _nsPerTick;

    public TscClock()
    {
        _origin = Tsc.Pair();
        // A first rate over 20 ms; refined by every later anchor.
        Thread.Sleep(20);
        _anchor = Tsc.Pair();
        _nsPerTick = (_anchor.Ns - _origin.Ns) / (double)Math.Max(1, _anchor.Tsc - _origin.Tsc);
    }

    /// <summary>Takes a new anchor; call before converting a batch of fresh stamps.</summary>
    public void Refresh()
    {
        _anchor = Tsc.Pair();
        if (_anchor.Tsc > _origin.Tsc + 1000) _nsPerTick = (_anchor.Ns - _origin.Ns) / (double)(_anchor.Tsc - _origin.Tsc);
    }

    public long ToNs(ulong tsc) => Current.ToNs(tsc);

    /// <summary>The map as it is now, as a value: a loop over a chunk of stamps converts with it inline.</summary>
    public Map Current => new(_anchor.Tsc, _anchor.Ns, _nsPerTick);

    public readonly record struct Map(ulong AnchorTsc, long AnchorNs, double NsPerTick)
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public long ToNs(ulong tsc) => AnchorNs + (long)((double)(long)(tsc - AnchorTsc) * NsPerTick);
    }
}
