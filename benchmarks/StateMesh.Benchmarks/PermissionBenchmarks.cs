using System.Text;
using BenchmarkDotNet.Attributes;
using Jint;
using Jint.Native;
using Microsoft.Extensions.Logging.Abstractions;
using StateMesh.Permissions;
using StateMesh.Storage;

namespace StateMesh.Benchmarks;

/// <summary>
/// One permission check, as the node runs it (the rule engine of ADR 0007), and the same rules on Jint, the
/// JavaScript interpreter the choice was measured against: a constant rule, <c>user.id === $owner</c>, a data
/// comparison on a write (data and oldData parsed from the record's JSON) and one <c>_()</c> read of a loaded record.
/// </summary>
[MemoryDiagnoser]
public class PermissionBenchmarks
{
    private const string Rules = """
        presence: { "*": { allow: true } }
        event: { "*": { publish: true, subscribe: true, listen: true } }
        rpc: { "*": { provide: true, request: true } }
        record:
          "*": { create: true, read: true, write: true, delete: true, listen: true, notify: true }
          "profile/$owner": { read: "user.id === $owner", write: "data.count > oldData.count" }
          "order/$id": { write: "_('stock/' + data.item).count > 0" }
        """;

    private PermissionGate _gate = null!;
    private RuleValue _user;
    private ReadOnlyMemory<byte> _data;
    private RecordState _old;
    private ReadOnlyMemory<byte> _order;
    private Dictionary<string, RuleValue> _loaded = null!;

    private Engine _jint = null!;
    private JsValue _jintUser = null!;
    private JsValue _jintStock = null!;
    private string _dataText = "";
    private string _oldText = "";
    private string _orderText = "";

    [GlobalSetup]
    public void Setup()
    {
        _gate = new PermissionGate(new StateMeshOptions().Permissions, NullLogger.Instance, TimeProvider.System);
        _gate.Use(PermissionRules.Parse(Rules, yaml: true, "benchmark"));
        _user = PermissionGate.UserValue("ana", System.Text.Json.Nodes.JsonNode.Parse("""{"role":"admin"}"""));
        _dataText = """{"name":"Ana","count":8,"tags":["a","b"]}""";
        _oldText = """{"name":"Ana","count":7,"tags":["a","b"]}""";
        _orderText = """{"item":"apple","amount":2}""";
        _data = Encoding.UTF8.GetBytes(_dataText);
        _old = new RecordState(7, Encoding.UTF8.GetBytes(_oldText));
        _order = Encoding.UTF8.GetBytes(_orderText);
        _loaded = new Dictionary<string, RuleValue>(StringComparer.Ordinal) { ["stock/apple"] = RuleValue.Of(System.Text.Json.JsonDocument.Parse("""{"count":3}""").RootElement) };

        // Jint with the limits a node would need: statements, recursion, time.
        _jint = new Engine(o => o.MaxStatements(10_000).LimitRecursion(64).TimeoutInterval(TimeSpan.FromMilliseconds(50)));
        _jint.Execute("""
            function owner(user, $owner) { return user.id === $owner }
            function compare(user, data, oldData) { return data.count > oldData.count }
            function lookup(user, data, _) { return _('stock/' + data.item).count > 0 }
            """);
        _jintUser = _jint.Evaluate("""({"id":"ana","isAuthenticated":true,"data":{"role":"admin"}})""");
        _jintStock = _jint.Evaluate("""({"count":3})""");
    }

    [Benchmark(Baseline = true)]
    public bool Constant() => _gate.CheckAsync(_user, PermissionSection.Record, RuleType.Read, 3, "anything/else").Result.IsAllowed;

    [Benchmark]
    public bool UserIdIsOwner() => _gate.CheckAsync(_user, PermissionSection.Record, RuleType.Read, 3, "profile/ana").Result.IsAllowed;

    [Benchmark]
    public bool DataAgainstOldData() => _gate.CheckLoaded(_user, PermissionSection.Record, RuleType.Write, 18, "profile/ana", _data, _old, _loaded, out _).IsAllowed;

    [Benchmark]
    public bool OneLookup() => _gate.CheckLoaded(_user, PermissionSection.Record, RuleType.Write, 18, "order/1", _order, null, _loaded, out _).IsAllowed;

    [Benchmark]
    public bool Jint_UserIdIsOwner() => _jint.Invoke("owner", _jintUser, "ana").AsBoolean();

    [Benchmark]
    public bool Jint_DataAgainstOldData()
    {
        var parser = new Jint.Native.Json.JsonParser(_jint);
        return _jint.Invoke("compare", _jintUser, parser.Parse(Encoding.UTF8.GetString(_data.Span)), parser.Parse(Encoding.UTF8.GetString(_old.Data.Span))).AsBoolean();
    }

    [Benchmark]
    public bool Jint_OneLookup()
    {
        var parser = new Jint.Native.Json.JsonParser(_jint);
        var lookup = new Jint.Runtime.Interop.ClrFunction(_jint, "_", (_, _) => _jintStock);
        return _jint.Invoke("lookup", _jintUser, parser.Parse(Encoding.UTF8.GetString(_order.Span)), lookup).AsBoolean();
    }
}
