namespace Uprec.Probing.Engine;

/// <summary>
/// The lock over the trace writer and the drain's state. The drain thread takes it again and again
/// while samples pour in; a plain lock is not fair, so the tracer, waiting for it to record a trap hit
/// or to stop at Ctrl-C, could wait as long as the program kept its rings busy (a CI run saw SIGINT
/// ignored for two minutes). Everyone but the drain enters with <see cref="Enter"/> and is counted
/// while it waits; the drain enters with <see cref="EnterAfterOthers"/>, which lets every counted
/// waiter in first, so a waiter waits for at most two drain passes (the one under way, and one that
/// began as it arrived).
/// </summary>
internal sealed class SinkLock
{
    private readonly object _gate = new();
    private int _waiting;

    public Scope Enter()
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            Monitor.Enter(_gate);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
        return new Scope(_gate);
    }

    /// <summary>Enters once no one else is waiting (the drain thread's way in).</summary>
    public Scope EnterAfterOthers()
    {
        while (Volatile.Read(ref _waiting) > 0) Thread.Sleep(0);
        Monitor.Enter(_gate);
        return new Scope(_gate);
    }

    public readonly struct Scope(object gate) : IDisposable
    {
        public void Dispose() => Monitor.Exit(gate);
    }
}
