using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>spawn.h. The opaque glibc types are handled as generously sized byte buffers.</summary>
public static unsafe partial class Spawn
{
    /// <summary>sizeof(posix_spawnattr_t) is 336 and sizeof(posix_spawn_file_actions_t) 80 on glibc x86-64; rounded up.</summary>
    public const int AttrSize = 512, FileActionsSize = 256, SigsetSize = 128;

    public const short POSIX_SPAWN_SETPGROUP = 0x02;
    public const short POSIX_SPAWN_SETSIGDEF = 0x04;
    public const short POSIX_SPAWN_SETSIGMASK = 0x08;

    [LibraryImport("libc")] public static partial int posix_spawnattr_init(byte* attr);
    [LibraryImport("libc")] public static partial int posix_spawnattr_destroy(byte* attr);
    [LibraryImport("libc")] public static partial int posix_spawnattr_setflags(byte* attr, short flags);
    [LibraryImport("libc")] public static partial int posix_spawnattr_setpgroup(byte* attr, int pgroup);
    [LibraryImport("libc")] public static partial int posix_spawnattr_setsigdefault(byte* attr, byte* sigset);
    [LibraryImport("libc")] public static partial int posix_spawnattr_setsigmask(byte* attr, byte* sigset);
    [LibraryImport("libc")] public static partial int posix_spawn_file_actions_init(byte* actions);
    [LibraryImport("libc")] public static partial int posix_spawn_file_actions_destroy(byte* actions);
    [LibraryImport("libc")] public static partial int posix_spawn_file_actions_adddup2(byte* actions, int fd, int newfd);
    [LibraryImport("libc")] public static partial int posix_spawn_file_actions_addclose(byte* actions, int fd);
    [LibraryImport("libc")] public static partial int posix_spawn_file_actions_addopen(byte* actions, int fd, byte* path, int oflag, uint mode);
    [LibraryImport("libc")] public static partial int sigemptyset(byte* set);
    [LibraryImport("libc")] public static partial int sigfillset(byte* set);
    [LibraryImport("libc")] public static partial int sigdelset(byte* set, int sig);

    /// <summary>posix_spawnp: returns an errno value, not -1.</summary>
    [LibraryImport("libc")]
    public static partial int posix_spawnp(int* pid, byte* file, byte* actions, byte* attr, byte** argv, byte** envp);

    /// <summary>The address of glibc's <c>environ</c>, so a child gets exactly our environment.</summary>
    public static byte** Environ()
    {
        nint lib = NativeLibrary.Load("libc.so.6");
        return *(byte***)NativeLibrary.GetExport(lib, "environ");
    }
}
