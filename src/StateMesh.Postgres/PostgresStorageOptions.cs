using System.Text.RegularExpressions;

namespace StateMesh.Postgres;

/// <summary>Where and how PostgreSQL keeps records.</summary>
public sealed partial class PostgresStorageOptions
{
    /// <summary>An Npgsql connection string, for example <c>Host=127.0.0.1;Port=5432;Database=statemesh;Username=statemesh;Password=…</c>.</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>
    /// The schema of the records table; created if missing. A plain lowercase identifier (letters, digits, underscores,
    /// at most 63 characters), so it means the same quoted or not.
    /// </summary>
    public string Schema { get; set; } = "public";

    /// <summary>The records table; created if missing. A plain lowercase identifier, like <see cref="Schema"/>.</summary>
    public string Table { get; set; } = "statemesh_records";

    /// <summary>Most writes committed together in one transaction.</summary>
    public int MaxBatchSize { get; set; } = 1024;

    /// <summary>
    /// Most bytes of record data committed together in one transaction (a batch always takes at least one write), so
    /// that a burst of large records does not become one huge statement.
    /// </summary>
    public int MaxBatchBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>Writes waiting for the writer. Past this a writer waits for room (back-pressure), in call order.</summary>
    public int QueueCapacity { get; set; } = 16_384;

    /// <summary>The problems with these options, each naming the setting; empty when they are valid.</summary>
    internal List<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            errors.Add("PostgresStorageOptions.ConnectionString is empty: give an Npgsql connection string such as 'Host=127.0.0.1;Database=statemesh;Username=statemesh'.");
        }
        else
        {
            try
            {
                _ = new Npgsql.NpgsqlConnectionStringBuilder(ConnectionString);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"PostgresStorageOptions.ConnectionString is not a valid Npgsql connection string: {ex.Message}");
            }
        }
        Identifier(errors, nameof(Schema), Schema);
        Identifier(errors, nameof(Table), Table);
        Positive(errors, nameof(MaxBatchSize), MaxBatchSize);
        Positive(errors, nameof(MaxBatchBytes), MaxBatchBytes);
        Positive(errors, nameof(QueueCapacity), QueueCapacity);
        return errors;
    }

    private static void Identifier(List<string> errors, string setting, string? value)
    {
        if (value is null || !IdentifierPattern().IsMatch(value))
        {
            errors.Add($"PostgresStorageOptions.{setting} '{value}' is not a plain PostgreSQL identifier: use 1 to 63 lowercase letters, digits and underscores, starting with a letter or underscore.");
        }
    }

    private static void Positive(List<string> errors, string setting, int value)
    {
        if (value < 1)
        {
            errors.Add($"PostgresStorageOptions.{setting} is {value}; it must be at least 1.");
        }
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$", RegexOptions.CultureInvariant)]
    private static partial Regex IdentifierPattern();
}
