using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>errno values uprec reacts to, and the one place errno becomes text.</summary>
public static partial class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ECHILD = 10, EAGAIN = 11,
        EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22;

    [LibraryImport("libc")]
    private static partial nint strerror(int errnum);

    public static string Describe(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";

    public static int Last => Marshal.GetLastPInvokeError();

    public static void Clear() => Marshal.SetLastPInvokeError(0);
}
