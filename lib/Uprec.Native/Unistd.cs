using System.Runtime.InteropServices;

// C names are kept in this library on purpose (struct iovec, stat_t): CS8981 warns about lower-case type names.
#pragma warning disable CS8981

namespace Uprec.Native;

/// <summary>unistd.h, fcntl.h, sys/uio.h, time.h, sched.h, sys/stat.h: the plain calls uprec needs.</summary>
public static unsafe partial class Unistd
{
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 0x80000;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int pipe2(int* fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, byte* buf, nint count);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint pread(int fd, byte* buf, nint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint pwrite(int fd, byte* buf, nint count, long offset);

    [LibraryImport("libc")]
    public static partial int getpid();

    [LibraryImport("libc")]
    public static partial int gettid();

    [LibraryImport("libc")]
    public static partial uint getuid();

    public const ulong AT_HWCAP2 = 26;

    [LibraryImport("libc")]
    public static partial ulong getauxval(ulong type);

    public const int SCHED_OTHER = 0, SCHED_IDLE = 5;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int sched_setscheduler(int pid, int policy, int* param);

    [StructLayout(LayoutKind.Sequential)]
    public struct iovec
    {
        public void* iov_base;
        public nint iov_len;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint process_vm_readv(int pid, iovec* local, ulong liovcnt, iovec* remote, ulong riovcnt, ulong flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint process_vm_writev(int pid, iovec* local, ulong liovcnt, iovec* remote, ulong riovcnt, ulong flags);

    public const int PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public const int MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20;

    [LibraryImport("libc", SetLastError = true)]
    public static partial void* mmap(void* addr, nint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int mprotect(void* addr, nint length, int prot);

    /// <summary>struct stat (x86-64): only st_dev and st_ino are read; the buffer is the full 144 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 144)]
    public struct stat_t
    {
        [FieldOffset(0)] public ulong st_dev;
        [FieldOffset(8)] public ulong st_ino;
        [FieldOffset(24)] public uint st_mode;
        [FieldOffset(28)] public uint st_uid;
    }

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int stat(string path, out stat_t buf);

    /// <summary>gnu_dev_major/minor as the kernel encodes st_dev (what /proc/PID/maps prints).</summary>
    public static uint major(ulong dev) => (uint)(((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff));
    public static uint minor(ulong dev) => (uint)(((dev >> 12) & 0xffffff00) | (dev & 0xff));
}
