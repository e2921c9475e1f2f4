using Uprec.Native;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Engine;

/// <summary>
/// A traced process's memory through /proc/PID/mem. Writes go through FOLL_FORCE, so they reach
/// read-only code pages (copy-on-write: only this process sees them), which process_vm_writev cannot.
/// Unmapped memory is a short read or write, reported as false, never an exception.
/// </summary>
internal sealed unsafe class ProcessMemory : ITargetMemory, IDisposable
{
    private int _fd;

    public int Pid { get; }

    public ProcessMemory(int pid)
    {
        Pid = pid;
        _fd = Unistd.open($"/proc/{pid}/mem", Unistd.O_RDWR | Unistd.O_CLOEXEC);
        if (_fd < 0)
            throw new ProbingException($"cannot open /proc/{pid}/mem: {Errno.Describe(Errno.Last)}");
    }

    public bool TryRead(ulong address, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = Unistd.pread(_fd, p + done, buffer.Length - done, (long)(address + (ulong)done));
                if (n <= 0) return false;
                done += (int)n;
            }
        }
        return true;
    }

    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            int done = 0;
            while (done < data.Length)
            {
                nint n = Unistd.pwrite(_fd, p + done, data.Length - done, (long)(address + (ulong)done));
                if (n <= 0) return false;
                done += (int)n;
            }
        }
        return true;
    }

    public void Write(ulong address, ReadOnlySpan<byte> data)
    {
        if (!TryWrite(address, data))
            throw new InvalidOperationException($"cannot write {data.Length} bytes at 0x{address:x} in process {Pid}: {Errno.Describe(Errno.Last)}");
    }

    public void Dispose()
    {
        if (_fd >= 0) Unistd.close(_fd);
        _fd = -1;
    }
}
