namespace Uprec.Reporting;

/// <summary>
/// Open-addressing map from a (pid, tid, comm id, probe id) key to a dense slot number: where report
/// finds a row's (task, probe) group when its small row cache misses. Why not a Dictionary over a tuple
/// with strings: hashing and comparing that tuple goes through shared generic code (strings make it
/// canonical), which cost ~15 ns a row under the JIT and more under Native AOT; here a key is two longs
/// and a lookup is a multiply and a compare.
/// </summary>
internal sealed class GroupTable
{
    private long[] _taskKeys = new long[64];
    private long[] _nameKeys = new long[64];
    // Slot number + 1 per table entry; 0 marks an empty entry.
    private int[] _slots = new int[64];
    private int _count;

    public int Count => _count;

    /// <summary>The slot of the key, adding it (as slot <see cref="Count"/> before the call) when new.</summary>
    public int GetOrAdd(int pid, int tid, int commId, int probeId, out bool added)
    {
        long task = ((long)pid << 32) | (uint)tid;
        long names = ((long)commId << 32) | (uint)probeId;
        int mask = _slots.Length - 1;
        int i = Hash(task, names) & mask;
        while (true)
        {
            int slot = _slots[i];
            if (slot == 0)
            {
                break;
            }
            if (_taskKeys[i] == task && _nameKeys[i] == names)
            {
                added = false;
                return slot - 1;
            }
            i = (i + 1) & mask;
        }
        added = true;
        int result = _count++;
        _taskKeys[i] = task;
        _nameKeys[i] = names;
        _slots[i] = result + 1;
        // Kept at most half full so probe sequences stay short.
        if (_count * 2 > _slots.Length)
        {
            Grow();
        }
        return result;
    }

    private static int Hash(long task, long names)
    {
        ulong h = unchecked((ulong)task * 0x9E3779B97F4A7C15UL ^ (ulong)names * 0xC2B2AE3D27D4EB4FUL);
        return (int)(h >> 32) ^ (int)h;
    }

    private void Grow()
    {
        long[] oldTask = _taskKeys, oldNames = _nameKeys;
        int[] oldSlots = _slots;
        int size = oldSlots.Length * 2;
        _taskKeys = new long[size];
        _nameKeys = new long[size];
        _slots = new int[size];
        int mask = size - 1;
        for (int j = 0; j < oldSlots.Length; j++)
        {
            if (oldSlots[j] == 0)
            {
                continue;
            }
            int i = Hash(oldTask[j], oldNames[j]) & mask;
            while (_slots[i] != 0)
            {
                i = (i + 1) & mask;
            }
            _taskKeys[i] = oldTask[j];
            _nameKeys[i] = oldNames[j];
            _slots[i] = oldSlots[j];
        }
    }
}

/// <summary>
/// Dense ids for the few distinct strings of a column (probe names, comms). The reader hands out one
/// string instance per distinct value, so a direct-mapped cache keyed by the instance's identity hash
/// decides almost every row with one predictable compare. (A linear scan of recent values was slower:
/// on interleaved rows the position of the match is random and every lookup mispredicted a branch.)
/// </summary>
internal sealed class NameIds
{
    private const int CacheSize = 64;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly string?[] _cached = new string?[CacheSize];
    private readonly int[] _cachedIds = new int[CacheSize];

    public List<string> Names { get; } = [];

    public int Id(string name)
    {
        int at = System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(name) & (CacheSize - 1);
        if (ReferenceEquals(_cached[at], name))
        {
            return _cachedIds[at];
        }
        return Miss(name, at);
    }

    private int Miss(string name, int at)
    {
        // Equal strings from different instances (another reader, an uninterned column) share one id.
        if (!_ids.TryGetValue(name, out int id))
        {
            id = Names.Count;
            _ids[name] = id;
            Names.Add(name);
        }
        _cached[at] = name;
        _cachedIds[at] = id;
        return id;
    }
}
