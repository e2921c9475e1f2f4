using System.Text.Json;
using System.Text.Json.Serialization;

namespace Uprec.Trace;

/// <summary>The footer's "uprec.metadata" value: <see cref="TraceMetadata"/> as camelCase JSON.</summary>
public static class TraceMetadataJson
{
    public static string Serialize(TraceMetadata metadata) => JsonSerializer.Serialize(metadata, TraceMetadataJsonContext.Default.TraceMetadata);

    /// <summary>Parses the footer JSON; <paramref name="path"/> only names the file in the error.</summary>
    public static TraceMetadata Deserialize(string json, string path)
    {
        try
        {
            return JsonSerializer.Deserialize(json, TraceMetadataJsonContext.Default.TraceMetadata)
                ?? throw new TraceFormatException($"trace '{path}' has an empty '{TraceColumns.MetadataKey}' footer entry");
        }
        catch (JsonException e)
        {
            throw new TraceFormatException(
                $"trace '{path}' has unreadable '{TraceColumns.MetadataKey}' footer metadata: {e.Message}", e);
        }
    }
}

// Source-generated so the metadata reads and writes without reflection (a Native AOT uprec has none).
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(TraceMetadata))]
internal sealed partial class TraceMetadataJsonContext : JsonSerializerContext;
