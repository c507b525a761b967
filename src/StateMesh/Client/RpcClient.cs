using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using StateMesh.Protocol;

namespace StateMesh.Client;

internal sealed class RpcClient(StateMeshClient client) : IRpcClient
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<Message>> _calls = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<Message, CancellationToken, Task<ReadOnlyMemory<byte>>>> _handlers = new(StringComparer.Ordinal);
    private CancellationTokenSource _connection = new();

    private object Gate => client.Gate;

    private StateMeshClient Client => client;

    // ---------- making calls ----------

    public Task<TResponse> MakeAsync<TRequest, TResponse>(string name, TRequest request, CancellationToken cancellationToken = default) =>
        MakeCoreAsync<TRequest, TResponse>(name, request, null, cancellationToken);

    public Task<TResponse> MakeAsync<TRequest, TResponse>(string name, TRequest request, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        MakeCoreAsync<TRequest, TResponse>(name, request, timeout, cancellationToken);

    internal Task<TResponse> MakeAsync<TRequest, TResponse>(string name, TRequest request, JsonTypeInfo<TRequest> requestInfo, JsonTypeInfo<TResponse> responseInfo, CancellationToken cancellationToken) =>
        MakeCoreAsync(name, request, null, requestInfo, responseInfo, cancellationToken);

    private Task<TResponse> MakeCoreAsync<TRequest, TResponse>(string name, TRequest request, TimeSpan? timeout, CancellationToken cancellationToken) =>
        MakeCoreAsync(name, request, timeout, client.GetTypeInfo<TRequest>(), client.GetTypeInfo<TResponse>(), cancellationToken);

    private async Task<TResponse> MakeCoreAsync<TRequest, TResponse>(string name, TRequest request, TimeSpan? timeout, JsonTypeInfo<TRequest> requestInfo, JsonTypeInfo<TResponse> responseInfo, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var data = JsonSerializer.SerializeToUtf8Bytes(request, requestInfo);
        client.CheckPayloadSize(data.Length, $"The request to '{name}'");
        var correlationId = client.NextCorrelationId();
        var reply = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        _calls[correlationId] = reply;
        try
        {
            await client.SendOrQueue(new Message
            {
                Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = name, CorrelationId = correlationId, Data = data,
                RequestTimeout = timeout is { } t ? (int)Math.Clamp(t.TotalMilliseconds, 1, int.MaxValue) : null,
            }).ConfigureAwait(false);
            var message = await reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return (RpcAction)message.Action switch
            {
                RpcAction.Response => message.Data is { } d ? JsonSerializer.Deserialize(d.Span, responseInfo)! : default!,
                RpcAction.NoRpcProvider => throw new RpcException(RpcErrorCode.NoProvider, $"No provider of '{name}' is available (or every provider rejected the request)."),
                RpcAction.AcceptTimeout => throw new RpcException(RpcErrorCode.AcceptTimeout, $"The provider of '{name}' did not accept the request in time."),
                RpcAction.ResponseTimeout => throw new RpcException(RpcErrorCode.ResponseTimeout, $"The provider of '{name}' did not respond in time."),
                RpcAction.RequestError => throw new RpcException(RpcErrorCode.ProviderError, ErrorText(message) ?? $"The provider of '{name}' failed."),
                _ => throw new RpcException(RpcErrorCode.Refused, $"The node refused the request to '{name}': {ActionNames.Of(Topic.Rpc, message.Action)}{(ErrorText(message) is { } text ? " (" + text + ")" : "")}."),
            };
        }
        catch (StateMeshOfflineException ex)
        {
            throw new RpcException(RpcErrorCode.ConnectionLost, ex.Message);
        }
        finally
        {
            _calls.TryRemove(correlationId, out _);
        }
    }

    private static string? ErrorText(Message message)
    {
        if (message.Data is not { } data)
        {
            return null;
        }
        try
        {
            using var doc = JsonDocument.Parse(data);
            return doc.RootElement.ValueKind == JsonValueKind.String ? doc.RootElement.GetString() : doc.RootElement.GetRawText();
        }
        catch (JsonException)
        {
            return System.Text.Encoding.UTF8.GetString(data.Span);
        }
    }

    // ---------- providing ----------

    public Task<IAsyncDisposable> ProvideAsync<TRequest, TResponse>(string name, Func<TRequest, CancellationToken, Task<TResponse>> handler, CancellationToken cancellationToken = default) =>
        ProvideWithContextAsync<TRequest, TResponse>(name, (request, ct) => handler(request.Data, ct), cancellationToken);

    public Task<IAsyncDisposable> ProvideWithContextAsync<TRequest, TResponse>(string name, Func<RpcRequest<TRequest>, CancellationToken, Task<TResponse>> handler, CancellationToken cancellationToken = default) =>
        ProvideAsync(name, handler, client.GetTypeInfo<TRequest>(), client.GetTypeInfo<TResponse>(), cancellationToken);

    internal async Task<IAsyncDisposable> ProvideAsync<TRequest, TResponse>(string name, Func<RpcRequest<TRequest>, CancellationToken, Task<TResponse>> handler, JsonTypeInfo<TRequest> requestInfo, JsonTypeInfo<TResponse> responseInfo, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        async Task<ReadOnlyMemory<byte>> Invoke(Message message, CancellationToken ct)
        {
            var data = message.Data is { } d ? JsonSerializer.Deserialize(d.Span, requestInfo)! : default!;
            JsonElement? requestorData = message.RequestorData is { } rd ? JsonDocument.Parse(rd).RootElement.Clone() : null;
            var result = await handler(new RpcRequest<TRequest>(name, data, message.RequestorName, requestorData), ct).ConfigureAwait(false);
            return JsonSerializer.SerializeToUtf8Bytes(result, responseInfo);
        }
        string correlationId;
        lock (Gate)
        {
            if (!_handlers.TryAdd(name, Invoke))
            {
                throw new InvalidOperationException($"'{name}' is already provided by this client.");
            }
            correlationId = client.NextCorrelationId();
        }
        var ack = client.WaitForAckAsync(Topic.Rpc, (int)RpcAction.Provide, correlationId, cancellationToken);
        lock (Gate)
        {
            client.TrySendIfOpen(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, Names = [name], CorrelationId = correlationId });
        }
        var registration = new Registration(this, name);
        try
        {
            await ack.ConfigureAwait(false);
        }
        catch
        {
            await registration.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return registration;
    }

    private sealed class Registration(RpcClient rpc, string name) : IAsyncDisposable
    {
        private int _disposed;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                lock (rpc.Gate)
                {
                    rpc._handlers.Remove(name);
                    rpc.Client.TrySendIfOpen(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Unprovide, Names = [name], CorrelationId = rpc.Client.NextCorrelationId() });
                }
            }
            return ValueTask.CompletedTask;
        }
    }

    public TService CreateProxy<TService>() where TService : class => RpcServiceRegistry.CreateProxy<TService>(this);

    public Task<IAsyncDisposable> ProvideAsync<TService>(TService implementation, CancellationToken cancellationToken = default) where TService : class =>
        RpcServiceRegistry.Provide(this, implementation, cancellationToken);

    // ---------- incoming ----------

    /// <summary>What a caller is told when a provider's handler throws anything but <see cref="RpcErrorException"/>.</summary>
    internal const string ProviderFailedText = "The provider failed.";

    private static readonly byte[] ProviderFailedJson = JsonSerializer.SerializeToUtf8Bytes(ProviderFailedText, StateMeshJsonContext.Default.String);

    public void Handle(Message message)
    {
        var action = (RpcAction)message.Action;
        if (action == RpcAction.Request)
        {
            OnRequest(message);
            return;
        }
        if (action == RpcAction.Accept || message.IsAck)
        {
            return; // the caller waits for the answer itself; acks of PROVIDE are matched by the client
        }
        if (message.CorrelationId is not null && _calls.TryGetValue(message.CorrelationId, out var call))
        {
            call.TrySetResult(message);
            return;
        }
        if (message.IsError)
        {
            ClientLog.NodeError(client.Logger, message.ToString());
        }
    }

    private void OnRequest(Message message)
    {
        Func<Message, CancellationToken, Task<ReadOnlyMemory<byte>>>? handler;
        CancellationToken connection;
        lock (Gate)
        {
            _handlers.TryGetValue(message.Name ?? "", out handler);
            connection = _connection.Token;
        }
        var reply = new Message { Topic = Topic.Rpc, Name = message.Name, CorrelationId = message.CorrelationId };
        if (handler is null)
        {
            // No longer provided here: let the node try someone else.
            client.TrySendIfOpen(reply with { Action = (int)RpcAction.Reject });
            return;
        }
        client.TrySendIfOpen(reply with { Action = (int)RpcAction.Accept });
        _ = Task.Run(async () =>
        {
            Message answer;
            try
            {
                var data = await handler(message, connection).ConfigureAwait(false);
                answer = reply with { Action = (int)RpcAction.Response, Data = data };
            }
            catch (RpcRejectedException)
            {
                answer = reply with { Action = (int)RpcAction.Reject };
            }
            catch (RpcErrorException ex)
            {
                answer = reply with { Action = (int)RpcAction.RequestError, Data = JsonSerializer.SerializeToUtf8Bytes(ex.Message, StateMeshJsonContext.Default.String) };
            }
            catch (Exception ex)
            {
                // Whatever the exception says stays here: the caller gets a fixed text.
                ClientLog.ProviderFailed(client.Logger, message.Name ?? "", ProviderFailedText, ex);
                answer = reply with { Action = (int)RpcAction.RequestError, Data = ProviderFailedJson };
            }
            client.TrySendIfOpen(answer);
        }, CancellationToken.None);
    }

    /// <summary>Called under the client's gate once logged in: provide again everything provided.</summary>
    public void OnOpened(ClientLink link)
    {
        _connection = new CancellationTokenSource();
        if (_handlers.Count > 0)
        {
            link.TrySend(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, Names = [.. _handlers.Keys], CorrelationId = client.NextCorrelationId() });
        }
    }

    /// <summary>The connection is gone: calls in flight fail now, and handlers running for the old connection are cancelled.</summary>
    public void OnConnectionLost()
    {
        _connection.Cancel();
        foreach (var key in _calls.Keys)
        {
            if (_calls.TryRemove(key, out var call))
            {
                call.TrySetException(new RpcException(RpcErrorCode.ConnectionLost, "The connection was lost before the provider answered."));
            }
        }
    }
}
