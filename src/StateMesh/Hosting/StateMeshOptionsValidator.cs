using System.Text.Json;
using Microsoft.Extensions.Options;
using StateMesh.Auth;

namespace StateMesh.Hosting;

/// <summary>Checks what data annotations cannot: users, JSON, and positive timeouts.</summary>
internal sealed class StateMeshOptionsValidator : IValidateOptions<StateMeshOptions>
{
    public ValidateOptionsResult Validate(string? name, StateMeshOptions options)
    {
        var errors = new List<string>();
        Positive(errors, "StateMesh:HeartbeatInterval", options.HeartbeatInterval);
        Positive(errors, "StateMesh:UnauthenticatedTimeout", options.UnauthenticatedTimeout);
        Positive(errors, "StateMesh:Records:CacheRetrievalTimeout", options.Records.CacheRetrievalTimeout);
        Positive(errors, "StateMesh:Records:StorageRetrievalTimeout", options.Records.StorageRetrievalTimeout);
        Positive(errors, "StateMesh:Rpc:AckTimeout", options.Rpc.AckTimeout);
        Positive(errors, "StateMesh:Rpc:ResponseTimeout", options.Rpc.ResponseTimeout);
        Positive(errors, "StateMesh:Listen:ResponseTimeout", options.Listen.ResponseTimeout);
        Annotated(errors, "StateMesh:Records", options.Records);
        Annotated(errors, "StateMesh:Limits", options.Limits);
        Positive(errors, "StateMesh:Limits:HttpTokenLifetime", options.Limits.HttpTokenLifetime);
        Annotated(errors, "StateMesh:Permissions", options.Permissions);
        var rules = Permissions(errors, options.Permissions);
        var permissionsBroken = rules is null && (options.Permissions.Path is { Length: > 0 } || options.Permissions.Rules is { Length: > 0 });
        Annotated(errors, "StateMesh:Auth:Http", options.Auth.Http);
        if (options.Auth.Http.EndpointUrl is { } url && (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https")))
        {
            errors.Add($"StateMesh:Auth:Http:EndpointUrl '{url}' must be an absolute http:// or https:// URL.");
        }
        if (options.Auth.Http.EndpointUrl is not null)
        {
            Positive(errors, "StateMesh:Auth:Http:RequestTimeout", options.Auth.Http.RequestTimeout);
        }
        if (string.IsNullOrWhiteSpace(options.Auth.Storage.Table) || options.Auth.Storage.Table.Contains('*', StringComparison.Ordinal))
        {
            errors.Add("StateMesh:Auth:Storage:Table must be a record name prefix such as 'users'.");
        }
        else if (options.Auth.Storage.Enabled && !permissionsBroken)
        {
            StorageTableIsClosed(errors, options.Auth.Storage.Table, rules);
        }
        foreach (var strategy in options.Auth.Order)
        {
            if (strategy is not ("users" or "http" or "storage" or "handlers" or "anonymous"))
            {
                errors.Add($"StateMesh:Auth:Order: unknown strategy '{strategy}' (use users, http, storage, handlers, anonymous).");
            }
        }
        if (string.IsNullOrWhiteSpace(options.NodeName))
        {
            errors.Add("StateMesh:NodeName must not be empty.");
        }
        if (options.Tcp.Enabled && !System.Net.IPAddress.TryParse(options.Tcp.Host == "localhost" ? "127.0.0.1" : options.Tcp.Host, out _))
        {
            errors.Add($"StateMesh:Tcp:Host '{options.Tcp.Host}' is not an IP address.");
        }
        foreach (var (user, u) in options.Users)
        {
            if (u.PasswordHash is null && u.Password is null)
            {
                errors.Add($"StateMesh:Users:{user} needs a PasswordHash (or a Password).");
            }
            if (u.PasswordHash is not null && !PasswordHash.IsWellFormed(u.PasswordHash))
            {
                errors.Add($"StateMesh:Users:{user}:PasswordHash is not a hash made by 'StateMesh.Server hash'.");
            }
            Json(errors, $"StateMesh:Users:{user}:ClientData", u.ClientData);
            Json(errors, $"StateMesh:Users:{user}:ServerData", u.ServerData);
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>
    /// Users kept as records hold password hashes and the serverData rules trust: clients must not read or change them,
    /// so storage-backed logins need permissions that refuse every action on the table.
    /// </summary>
    private static void StorageTableIsClosed(List<string> errors, string table, StateMesh.Permissions.PermissionRules? rules)
    {
        if (rules is null)
        {
            errors.Add($"StateMesh:Auth:Storage: users kept as records need permissions that keep clients from them, such as \"{table}/*\": {{ create: false, read: false, write: false, delete: false, listen: false, notify: false }}.");
            return;
        }
        var open = new[] { StateMesh.Permissions.RuleType.Create, StateMesh.Permissions.RuleType.Read, StateMesh.Permissions.RuleType.Write, StateMesh.Permissions.RuleType.Delete, StateMesh.Permissions.RuleType.Listen, StateMesh.Permissions.RuleType.Notify }
            .Where(type => rules.Find(StateMesh.Permissions.PermissionSection.Record, type, $"{table}/someone") is { Rule.Constant: not false })
            .Select(StateMesh.Permissions.PermissionRules.RuleName)
            .ToArray();
        if (open.Length > 0)
        {
            errors.Add($"StateMesh:Auth:Storage: the permissions let clients {string.Join(", ", open)} the user records under \"{table}/\"; add \"{table}/*\" with each of them false.");
        }
    }

    /// <summary>The permissions must load: a bad file stops the node at start with the file's problem, in one line. Returns them (null: none, or not loadable).</summary>
    private static StateMesh.Permissions.PermissionRules? Permissions(List<string> errors, PermissionOptions options)
    {
        if (options.Path is { Length: > 0 } && options.Rules is { Length: > 0 })
        {
            errors.Add("StateMesh:Permissions: set Path or Rules, not both.");
            return null;
        }
        try
        {
            if (options.Path is { Length: > 0 } path)
            {
                return StateMesh.Permissions.PermissionRules.Load(System.IO.Path.GetFullPath(path));
            }
            if (options.Rules is { Length: > 0 } rules)
            {
                return StateMesh.Permissions.PermissionRules.Parse(rules, yaml: true, "StateMesh:Permissions:Rules");
            }
        }
        catch (StateMesh.Permissions.PermissionsException ex)
        {
            errors.Add($"StateMesh:Permissions: {ex.Message}");
        }
        return null;
    }

    /// <summary>The [Range] rules of a nested section (data annotations do not look inside nested objects).</summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "The options types are kept: they are bound from configuration.")]
    private static void Annotated(List<string> errors, string section, object value)
    {
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        if (!System.ComponentModel.DataAnnotations.Validator.TryValidateObject(value, new System.ComponentModel.DataAnnotations.ValidationContext(value), results, validateAllProperties: true))
        {
            foreach (var result in results)
            {
                errors.Add($"{section}:{string.Join(",", result.MemberNames)}: {result.ErrorMessage}");
            }
        }
    }

    private static void Positive(List<string> errors, string key, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{key} must be positive (it is {value}).");
        }
    }

    private static void Json(List<string> errors, string key, string? json)
    {
        if (json is null)
        {
            return;
        }
        try
        {
            using var _ = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            errors.Add($"{key} is not valid JSON: {ex.Message}");
        }
    }
}
