using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Uprec.Probing.Engine;
using Uprec.Symbols;
using Uprec.Trace;
using L = Uprec.Probing.Arch.InProcessLayout;

namespace Uprec.Probing.Tests;

/// <summary>
/// The drain against a thread block laid out in this process's own memory (process_vm_readv reads
/// its own pid like a target's): a record whose slot is reserved but not yet committed is waited for,
/// however many passes go by, and not given up while its thread can still finish it; garbage is skipped.
/// </summary>
public class DrainerTests : IDisposable
{
    private const int ProbeId = 3;
    private readonly string _dir = Directory.CreateTempSubdirectory("uprec-drainer-").FullName;
    private readonly byte[] _block = GC.AllocateArray<byte>(L.BlockSize, pinned: true);
    private readonly byte[] _table = GC.AllocateArray<byte>(L.ThreadsMappingSize, pinned: true);

    private ulong Address(byte[] memory) => (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(memory, 0);

    private void Write(ulong seq, ulong commit)
    {
        Span<byte> record = _block.AsSpan(L.RingOffset + (int)(seq % L.RingRecords) * L.RecordSize, L.RecordSize);
        BinaryPrimitives.WriteUInt64LittleEndian(record[L.RecordTsc..], 1000 + seq);
        BinaryPrimitives.WriteUInt64LittleEndian(record[L.RecordCommit..], commit);
    }

    private void Head(ulong head) => BinaryPrimitives.WriteUInt64LittleEndian(_block.AsSpan(L.HeadOffset), head);

    [Fact]
    public void A_record_being_written_is_waited_for_and_garbage_is_skipped()
    {
        var probe = new Probe { Id = ProbeId, Spec = ProbeSpecParser.Parse("prog:f"), Name = "f" };
        using var writer = new TraceWriter(Path.Combine(_dir, "t.parquet"), new TraceWriterOptions { Probes = [probe.ToMeta()] });
        using var drainer = new Drainer(new SinkLock(), writer);
        drainer.AddProbe(probe);
        var area = new InProcessArea(Environment.ProcessId, Address(_table));
        var block = new ThreadBlock(Address(_block), 1, 0);
        area.Blocks.Add(block);

        // 0-4 committed, 5 reserved (its slot still zero, as on a ring's first lap), 6 committed,
        // 7 garbage, 8 and 9 committed.
        for (ulong seq = 0; seq < 10; seq++)
        {
            if (seq != 5) Write(seq, seq == 7 ? 0xdead_beef : L.Commit(seq, ProbeId));
        }
        Head(10);
        for (int pass = 0; pass < 20; pass++)
        {
            drainer.DrainNow(area, close: false);
            Assert.Equal(5UL, block.Consumed);
        }
        Assert.Equal(5, drainer.RowsOf(ProbeId));

        Write(5, L.Commit(5, ProbeId)); // the thread gets to run again and commits it
        drainer.DrainNow(area, close: false);
        Assert.Equal(10UL, block.Consumed);
        Assert.Equal(9, drainer.RowsOf(ProbeId)); // all but the garbage

        // The last drain of a block whose thread is gone gives up on a record it never committed.
        Write(10, L.Commit(10, ProbeId));
        Head(12);
        drainer.DrainNow(area, close: false);
        Assert.Equal(11UL, block.Consumed);
        drainer.DrainNow(area, close: true);
        Assert.Equal(12UL, block.Consumed);
        Assert.Equal(10, drainer.RowsOf(ProbeId));
    }

    /// <summary>
    /// A fork copies the parent's ring, full or not; the child's copy starts with its records given to
    /// the parent, so its thread must get the room back: with the parent's tail it would drop every sample.
    /// </summary>
    [Fact]
    public void A_forked_childs_copy_of_a_full_ring_is_given_its_room_back()
    {
        using var writer = new TraceWriter(Path.Combine(_dir, "f.parquet"));
        using var drainer = new Drainer(new SinkLock(), writer);
        var parent = new InProcessArea(Environment.ProcessId, Address(_table));
        parent.Blocks.Add(new ThreadBlock(Address(_block), 1, 0));
        ulong tail = 3 * (ulong)L.RingRecords + 17;
        Head(tail + L.RingRecords); // full: the trampoline drops while head - tail >= RingRecords
        BinaryPrimitives.WriteUInt64LittleEndian(_block.AsSpan(L.TailOffset), tail);

        InProcessArea child = parent.CopyForChild(Environment.ProcessId, drainer);

        Assert.Equal(tail + L.RingRecords, child.Blocks[0].Consumed);
        Assert.Equal(tail + L.RingRecords, BinaryPrimitives.ReadUInt64LittleEndian(_block.AsSpan(L.TailOffset)));
    }

    [Fact]
    public void A_reserved_slot_holds_zero_on_the_first_lap_and_the_previous_laps_commit_after()
    {
        Assert.True(Drainer.BeingWritten(0, 5));
        Assert.False(Drainer.BeingWritten(L.Commit(5, ProbeId), 5));
        ulong seq = L.RingRecords + 5UL;
        Assert.True(Drainer.BeingWritten(L.Commit(5, ProbeId), seq));
        Assert.True(Drainer.BeingWritten(L.Commit(5, 7), seq));          // whichever probe wrote it last lap
        Assert.False(Drainer.BeingWritten(0, seq));                        // zero after the first lap is garbage
        Assert.False(Drainer.BeingWritten(L.Commit(seq, ProbeId), seq));   // committed
        Assert.False(Drainer.BeingWritten(L.Commit(4, ProbeId), seq));     // another slot's word: garbage
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
