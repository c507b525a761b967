using System.Buffers;
using System.Globalization;
using System.Text.Json;
using YamlDotNet.RepresentationModel;

namespace StateMesh.Permissions;

/// <summary>A YAML document as JSON, with YAML's core schema for plain scalars (true, false, null, numbers).</summary>
internal static class YamlToJson
{
    public static JsonDocument Convert(string yaml)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(yaml))
        {
            stream.Load(reader);
        }
        if (stream.Documents.Count != 1)
        {
            throw new FormatException(stream.Documents.Count == 0 ? "the file is empty" : "the file holds more than one YAML document");
        }
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Write(writer, stream.Documents[0].RootNode, 0);
        }
        return JsonDocument.Parse(buffer.WrittenMemory);
    }

    private static void Write(Utf8JsonWriter writer, YamlNode node, int depth)
    {
        if (depth > 16)
        {
            throw new FormatException("the file nests deeper than 16 levels");
        }
        switch (node)
        {
            case YamlMappingNode mapping:
                writer.WriteStartObject();
                var keys = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (key, value) in mapping.Children)
                {
                    var name = key is YamlScalarNode scalar ? scalar.Value ?? "" : throw new FormatException($"a key must be a plain value (line {key.Start.Line})");
                    if (!keys.Add(name))
                    {
                        throw new FormatException($"the key \"{name}\" appears twice (line {key.Start.Line})");
                    }
                    writer.WritePropertyName(name);
                    Write(writer, value, depth + 1);
                }
                writer.WriteEndObject();
                break;
            case YamlSequenceNode sequence:
                writer.WriteStartArray();
                foreach (var item in sequence.Children)
                {
                    Write(writer, item, depth + 1);
                }
                writer.WriteEndArray();
                break;
            case YamlScalarNode scalar:
                WriteScalar(writer, scalar);
                break;
            default:
                throw new FormatException($"unsupported YAML at line {node.Start.Line}");
        }
    }

    private static void WriteScalar(Utf8JsonWriter writer, YamlScalarNode scalar)
    {
        var value = scalar.Value ?? "";
        if (scalar.Style is YamlDotNet.Core.ScalarStyle.Plain)
        {
            switch (value)
            {
                case "true" or "True" or "TRUE":
                    writer.WriteBooleanValue(true);
                    return;
                case "false" or "False" or "FALSE":
                    writer.WriteBooleanValue(false);
                    return;
                case "" or "~" or "null" or "Null" or "NULL":
                    writer.WriteNullValue();
                    return;
            }
            if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && value.Length > 0 && (char.IsDigit(value[0]) || value[0] is '-' or '+' or '.'))
            {
                writer.WriteNumberValue(number);
                return;
            }
        }
        writer.WriteStringValue(value);
    }
}
