using StateMesh.Permissions;
using StateMesh.Protocol;
using StateMesh.Storage;

namespace StateMesh.Server;

/// <summary>
/// Which rule each incoming action is checked against (deepstream's table), and the check in front of the topics for
/// every action but record writes (those are checked where the record's current data and the merged result are known,
/// in the records topic). Bulk messages are checked per name: the names allowed go on, each name refused gets its own
/// MESSAGE_DENIED. Actions without a rule (UNSUBSCRIBE, ACCEPT, RESPONSE…) always pass.
/// </summary>
internal static class MessagePermissions
{
    private readonly record struct Check(PermissionSection Section, RuleType Type, bool Bulk, bool WithData = false, bool CreateIfMissing = false);

    private static Check? CheckOf(Message message) => message.Topic switch
    {
        Topic.Event => (EventAction)message.Action switch
        {
            EventAction.Emit => new Check(PermissionSection.Event, RuleType.Publish, Bulk: false, WithData: true),
            EventAction.Subscribe => new Check(PermissionSection.Event, RuleType.Subscribe, Bulk: true),
            EventAction.Listen => new Check(PermissionSection.Event, RuleType.Listen, Bulk: false),
            _ => null,
        },
        Topic.Rpc => (RpcAction)message.Action switch
        {
            RpcAction.Provide => new Check(PermissionSection.Rpc, RuleType.Provide, Bulk: true),
            RpcAction.Request => new Check(PermissionSection.Rpc, RuleType.Request, Bulk: false, WithData: true),
            _ => null,
        },
        Topic.Presence => (PresenceAction)message.Action switch
        {
            PresenceAction.Subscribe or PresenceAction.Query => new Check(PermissionSection.Presence, RuleType.Allow, Bulk: true),
            PresenceAction.SubscribeAll or PresenceAction.QueryAll or PresenceAction.QueryCount => new Check(PermissionSection.Presence, RuleType.Allow, Bulk: false),
            _ => null,
        },
        Topic.Record => (RecordAction)message.Action switch
        {
            RecordAction.Subscribe or RecordAction.SubscribeAndHead or RecordAction.SubscribeAndRead or RecordAction.HeadBulk
                => new Check(PermissionSection.Record, RuleType.Read, Bulk: true),
            RecordAction.SubscribeCreateAndRead => new Check(PermissionSection.Record, RuleType.Read, Bulk: true, CreateIfMissing: true),
            RecordAction.Read or RecordAction.Head => new Check(PermissionSection.Record, RuleType.Read, Bulk: false),
            RecordAction.Listen => new Check(PermissionSection.Record, RuleType.Listen, Bulk: false),
            RecordAction.Notify => new Check(PermissionSection.Record, RuleType.Notify, Bulk: true),
            RecordAction.Delete => new Check(PermissionSection.Record, RuleType.Delete, Bulk: false),
            RecordAction.DeleteBulk => new Check(PermissionSection.Record, RuleType.Delete, Bulk: true),
            _ => null,
        },
        _ => null,
    };

    /// <summary>Whether the message is checked here (false: no rule applies, or the records topic checks it).</summary>
    public static bool Applies(Message message) => CheckOf(message) is not null;

    /// <summary>
    /// Checks the message; returns the message to hand on (with only the allowed names for a bulk message), or null
    /// when nothing of it is allowed (the client was told for each name).
    /// </summary>
    public static async ValueTask<Message?> FilterAsync(PermissionGate gate, Session session, Message message)
    {
        var check = CheckOf(message)!.Value;
        if (!check.Bulk || message.Names is not { Length: > 0 })
        {
            if (check.Bulk && message.Name is null)
            {
                return message; // the topic answers a message without names with its own error
            }
            var name = message.Name ?? "";
            var verdict = await CheckOneAsync(gate, session, message, check, name).ConfigureAwait(false);
            if (verdict.IsAllowed)
            {
                return message;
            }
            gate.Refuse(session, message, name, verdict);
            return null;
        }
        var names = message.Names;
        // A bulk message that also names one record in Name: that name is checked too, and dropped when refused, so
        // that a topic reading Name never acts on a name nobody checked.
        if (message.Name is { } single && Array.IndexOf(names, single) < 0)
        {
            var verdict = await CheckOneAsync(gate, session, message, check, single).ConfigureAwait(false);
            if (!verdict.IsAllowed)
            {
                gate.Refuse(session, message, single, verdict);
                message = message with { Name = null };
            }
        }
        // Most messages are allowed whole: a list of the allowed names is made only once one is refused.
        List<string>? allowed = null;
        for (var i = 0; i < names.Length; i++)
        {
            var name = names[i];
            var verdict = await CheckOneAsync(gate, session, message, check, name).ConfigureAwait(false);
            if (verdict.IsAllowed)
            {
                allowed?.Add(name);
                continue;
            }
            allowed ??= [.. names[..i]];
            gate.Refuse(session, message, name, verdict);
        }
        if (allowed is null)
        {
            return message;
        }
        return allowed.Count == 0 ? null : message with { Names = [.. allowed] };
    }

    private static async ValueTask<Verdict> CheckOneAsync(PermissionGate gate, Session session, Message message, Check check, string name)
    {
        var data = check.WithData ? message.Data : null;
        if (!check.CreateIfMissing)
        {
            return await gate.CheckAsync(session.RuleUser, check.Section, check.Type, message.Action, name, data).ConfigureAwait(false);
        }
        // Subscribe-create-and-read: reading needs the read rule; when the record does not exist yet, creating it needs
        // the create rule as well.
        var read = await gate.CheckAsync(session.RuleUser, PermissionSection.Record, RuleType.Read, message.Action, name).ConfigureAwait(false);
        if (!read.IsAllowed)
        {
            return read;
        }
        var create = gate.Rules?.Find(PermissionSection.Record, RuleType.Create, name);
        if (create is { Rule.Constant: true })
        {
            return read;
        }
        RecordState? current;
        try
        {
            current = await gate.ReadAsync(name).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            return new Verdict(PermissionOutcome.Failed, $"the record '{name}' could not be read: {ex.Message}");
        }
        return current is not null ? read : await gate.CheckAsync(session.RuleUser, PermissionSection.Record, RuleType.Create, (int)RecordAction.Create, name).ConfigureAwait(false);
    }
}
