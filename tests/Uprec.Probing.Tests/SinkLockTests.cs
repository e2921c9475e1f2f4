using Uprec.Probing.Engine;

namespace Uprec.Probing.Tests;

/// <summary>
/// The drain thread takes the sink lock pass after pass while samples pour in; the tracer must still get
/// it (to record a trap hit, to stop at Ctrl-C). A waiter gets in before the drain starts another pass:
/// counted in passes, not in time, so the test does not depend on the machine's speed.
/// </summary>
public class SinkLockTests
{
    [Fact]
    public void A_waiter_gets_in_before_the_drain_takes_a_second_pass()
    {
        var sink = new SinkLock();
        long passes = 0;
        bool stop = false;
        var drain = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                using (sink.EnterAfterOthers())
                {
                    Interlocked.Increment(ref passes);
                    Thread.SpinWait(2000); // a pass holds the lock a while
                }
            }
        });
        drain.Start();
        try
        {
            while (Interlocked.Read(ref passes) < 10) Thread.Yield();
            for (int i = 0; i < 200; i++)
            {
                long before = Interlocked.Read(ref passes);
                using (sink.Enter())
                {
                    // The pass in progress when we came, and one that began as we started waiting: no more.
                    long during = Interlocked.Read(ref passes) - before;
                    Assert.InRange(during, 0, 2);
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            drain.Join();
        }
    }
}
