using System.Text;

namespace Uprec.Trace.ParquetEncoding;

/// <summary>
/// The Thrift compact protocol, write side only, as much as Parquet's page headers and footer need:
/// field headers with delta ids, zigzag varints, binary, lists, nested structs, booleans in the header.
/// </summary>
internal sealed class ThriftCompactWriter(ByteBuffer output)
{
    public const byte BoolTrue = 1, BoolFalse = 2, Byte = 3, I32 = 5, I64 = 6, Binary = 8, List = 9, Struct = 12;

    private readonly Stack<short> _lastIds = new();
    private short _lastId;

    public void BeginStruct()
    {
        _lastIds.Push(_lastId);
        _lastId = 0;
    }

    public void EndStruct()
    {
        output.AppendByte(0);
        _lastId = _lastIds.Pop();
    }

    private void FieldHeader(short id, byte type)
    {
        int delta = id - _lastId;
        if (delta is > 0 and <= 15)
        {
            output.AppendByte((byte)((delta << 4) | type));
        }
        else
        {
            output.AppendByte(type);
            VarInt(ZigZag(id));
        }
        _lastId = id;
    }

    public void I32Field(short id, int value)
    {
        FieldHeader(id, I32);
        VarInt(ZigZag(value));
    }

    public void I64Field(short id, long value)
    {
        FieldHeader(id, I64);
        VarInt(ZigZag(value));
    }

    public void ByteField(short id, sbyte value)
    {
        FieldHeader(id, Byte);
        output.AppendByte((byte)value);
    }

    public void BoolField(short id, bool value) => FieldHeader(id, value ? BoolTrue : BoolFalse);

    public void StringField(short id, string value)
    {
        FieldHeader(id, Binary);
        StringValue(value);
    }

    public void StructField(short id)
    {
        FieldHeader(id, Struct);
        BeginStruct();
    }

    public void ListField(short id, byte elementType, int count)
    {
        FieldHeader(id, List);
        ListHeader(elementType, count);
    }

    public void ListHeader(byte elementType, int count)
    {
        if (count < 15)
        {
            output.AppendByte((byte)((count << 4) | elementType));
        }
        else
        {
            output.AppendByte((byte)(0xF0 | elementType));
            VarInt((ulong)count);
        }
    }

    public void I32Value(int value) => VarInt(ZigZag(value));

    public void StringValue(string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        VarInt((ulong)bytes.Length);
        output.Append(bytes);
    }

    private static ulong ZigZag(long v) => (ulong)((v << 1) ^ (v >> 63));

    private void VarInt(ulong v)
    {
        while (v >= 0x80)
        {
            output.AppendByte((byte)(v | 0x80));
            v >>= 7;
        }
        output.AppendByte((byte)v);
    }
}
