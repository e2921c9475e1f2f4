namespace Uprec.Trace.ParquetEncoding;

/// <summary>
/// Just enough of the Thrift compact protocol to read Parquet page headers: field headers, integers,
/// nested structs, and skipping anything else. Every read is bounds-checked (InvalidDataException).
/// </summary>
internal ref struct ThriftCompactReader(ReadOnlySpan<byte> data)
{
    public const byte Struct = 12;
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;
    private short _lastId;

    public readonly int Position => _pos;

    /// <summary>Reads the next field header; false at the struct's STOP byte.</summary>
    public bool NextField(out short id, out byte type)
    {
        byte b = Byte();
        if (b == 0)
        {
            id = 0;
            type = 0;
            return false;
        }
        type = (byte)(b & 0x0F);
        int delta = b >> 4;
        id = delta != 0 ? (short)(_lastId + delta) : (short)ZigZag32(VarInt());
        _lastId = id;
        return true;
    }

    /// <summary>Enters a nested struct; pass the returned value to <see cref="LeaveStruct"/>.</summary>
    public short EnterStruct()
    {
        short saved = _lastId;
        _lastId = 0;
        return saved;
    }

    public void LeaveStruct(short saved) => _lastId = saved;

    public int ReadI32(byte type) => type is 5 or 4 or 6
        ? (int)ZigZag64(VarInt())
        : throw new InvalidDataException($"thrift type {type} where an integer was expected");

    public void Skip(byte type)
    {
        switch (type)
        {
            case 1 or 2: break;                        // bool: the value is in the header
            case 3: Byte(); break;
            case 4 or 5 or 6: VarInt(); break;
            case 7: Advance(8); break;
            case 8: Advance(checked((int)VarInt())); break;
            case 9 or 10:
            {
                byte h = Byte();
                int count = h >> 4;
                if (count == 15)
                {
                    count = checked((int)VarInt());
                }
                byte element = (byte)(h & 0x0F);
                for (int i = 0; i < count; i++)
                {
                    if (element is 1 or 2)
                    {
                        Byte();
                    }
                    else
                    {
                        Skip(element);
                    }
                }
                break;
            }
            case 11:
            {
                int count = checked((int)VarInt());
                if (count > 0)
                {
                    byte kv = Byte();
                    for (int i = 0; i < count; i++)
                    {
                        Skip((byte)(kv >> 4));
                        Skip((byte)(kv & 0x0F));
                    }
                }
                break;
            }
            case 12:
            {
                short saved = EnterStruct();
                while (NextField(out _, out byte t))
                {
                    Skip(t);
                }
                LeaveStruct(saved);
                break;
            }
            default:
                throw new InvalidDataException($"unknown thrift type {type}");
        }
    }

    private byte Byte() => _pos < _data.Length ? _data[_pos++] : throw new InvalidDataException("truncated thrift data");

    private void Advance(int n)
    {
        if (n < 0 || _pos + n > _data.Length)
        {
            throw new InvalidDataException("truncated thrift data");
        }
        _pos += n;
    }

    private ulong VarInt()
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = Byte();
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return v;
            }
        }
        throw new InvalidDataException("thrift varint too long");
    }

    private static int ZigZag32(ulong v) => (int)((uint)v >> 1) ^ -(int)(v & 1);
    private static long ZigZag64(ulong v) => (long)(v >> 1) ^ -(long)(v & 1);
}
