namespace Uprec.Probing;

/// <summary>A failure the user can act on (cannot start the program, cannot attach, bad probe site).</summary>
public sealed class ProbingException(string message) : Exception(message);

/// <summary>
/// A traced task vanished between two ptrace calls (killed, exited). Not an error: the caller drops
/// the task and carries on.
/// </summary>
internal sealed class TaskGoneException(int tid) : Exception($"task {tid} is gone")
{
    public int Tid { get; } = tid;
}
