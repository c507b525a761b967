using System.Text.Json;

namespace StateMesh.Records;

internal static class JsonValidation
{
    private static readonly JsonReaderOptions Options = new() { MaxDepth = 64, CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>Checks that the bytes are one complete JSON value, without building it. Returns the first token.</summary>
    public static bool TryValidate(ReadOnlySpan<byte> json, out JsonTokenType first, out string error)
    {
        first = JsonTokenType.None;
        error = "";
        try
        {
            var reader = new Utf8JsonReader(json, Options);
            if (!reader.Read())
            {
                error = "the data is empty";
                return false;
            }
            first = reader.TokenType;
            reader.Skip();
            if (reader.Read())
            {
                error = "the data has more than one JSON value";
                return false;
            }
            return true;
        }
        catch (JsonException ex)
        {
            error = "the data is not valid JSON: " + ex.Message;
            return false;
        }
    }
}
