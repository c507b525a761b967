using Microsoft.Extensions.Options;

namespace StateMesh.Postgres;

/// <summary>Checks <see cref="PostgresStorageOptions"/> when the host starts, so a bad table name stops the start with a clear message.</summary>
internal sealed class PostgresStorageOptionsValidator : IValidateOptions<PostgresStorageOptions>
{
    public ValidateOptionsResult Validate(string? name, PostgresStorageOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
