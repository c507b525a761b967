using System.Reactive.Disposables;
using System.Reactive.Linq;
using System.Reactive.Subjects;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using StateMesh.Protocol;

namespace StateMesh.Client;

internal sealed class EventsClient(StateMeshClient client) : IEventsClient
{
    private readonly Dictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);

    private object Gate => client.Gate;

    public IObservable<T> Observe<T>(string name, JsonTypeInfo<T>? typeInfo = null)
    {
        ValidateName(name);
        var info = typeInfo ?? client.GetTypeInfo<T>();
        return Observable.Create<T>(observer =>
        {
            var subscription = Acquire(name, out _);
            var inner = subscription.Payloads.Subscribe(payload =>
            {
                T value;
                try
                {
                    value = JsonSerializer.Deserialize(payload.Span, info)!;
                }
                catch (JsonException ex)
                {
                    ClientLog.BadPayload(client.Logger, name, typeof(T).Name, ex);
                    return;
                }
                observer.OnNext(value);
            });
            return Disposable.Create(() =>
            {
                inner.Dispose();
                Release(name, subscription);
            });
        });
    }

    public async Task<IDisposable> SubscribeAsync<T>(string name, Action<T> onEvent, JsonTypeInfo<T>? typeInfo = null, CancellationToken cancellationToken = default)
    {
        var handle = Observe(name, typeInfo).Subscribe(onEvent);
        try
        {
            Task ack;
            lock (Gate)
            {
                ack = _subscriptions[name].Acknowledged.Task;
            }
            await ack.WaitAsync(client.Options.AckTimeout, client.Time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            handle.Dispose();
            throw new StateMeshException($"The node did not acknowledge the subscription to '{name}' within {client.Options.AckTimeout}.");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return handle;
    }

    public IObservable<ListenOffer> Listen(string pattern) => client.EventListeners.Listen(pattern);

    public Task PublishAsync<T>(string name, T value, JsonTypeInfo<T>? typeInfo = null, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        cancellationToken.ThrowIfCancellationRequested();
        var info = typeInfo ?? client.GetTypeInfo<T>();
        var data = JsonSerializer.SerializeToUtf8Bytes(value, info);
        client.CheckPayloadSize(data.Length, $"The event '{name}'");
        return client.SendOrQueue(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = name, Data = data });
    }

    private Subscription Acquire(string name, out bool created)
    {
        lock (Gate)
        {
            if (_subscriptions.TryGetValue(name, out var existing))
            {
                existing.References++;
                created = false;
                return existing;
            }
            var subscription = new Subscription(name) { References = 1 };
            _subscriptions[name] = subscription;
            created = true;
            if (client.IsOpen)
            {
                SendSubscribe([subscription]);
            }
            return subscription;
        }
    }

    private void Release(string name, Subscription subscription)
    {
        lock (Gate)
        {
            if (--subscription.References > 0 || !_subscriptions.Remove(name))
            {
                return;
            }
            subscription.Payloads.OnCompleted();
            client.TrySendIfOpen(new Message { Topic = Topic.Event, Action = (int)EventAction.Unsubscribe, Names = [name], CorrelationId = client.NextCorrelationId() });
        }
    }

    /// <summary>Called under the client's gate once logged in: (re)subscribe everything in one bulk message.</summary>
    public void OnOpened(ClientLink link)
    {
        lock (Gate)
        {
            if (_subscriptions.Count > 0)
            {
                SendSubscribe([.. _subscriptions.Values], link);
            }
        }
    }

    private void SendSubscribe(Subscription[] subscriptions, ClientLink? link = null)
    {
        var correlationId = client.NextCorrelationId();
        var message = new Message
        {
            Topic = Topic.Event, Action = (int)EventAction.Subscribe, CorrelationId = correlationId,
            Names = [.. subscriptions.Select(s => s.Name)],
        };
        var ack = client.WaitForAckAsync(Topic.Event, (int)EventAction.Subscribe, correlationId, CancellationToken.None);
        _ = ack.ContinueWith(
            t =>
            {
                foreach (var s in subscriptions)
                {
                    if (t.IsCompletedSuccessfully)
                    {
                        s.Acknowledged.TrySetResult();
                    }
                }
            },
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        if (link is not null)
        {
            link.TrySend(message);
        }
        else
        {
            client.TrySendIfOpen(message);
        }
    }

    public void Handle(Message message)
    {
        if (message.Action == (int)EventAction.Emit && message.Name is not null)
        {
            Subscription? subscription;
            lock (Gate)
            {
                _subscriptions.TryGetValue(message.Name, out subscription);
            }
            if (subscription is not null)
            {
                try
                {
                    subscription.Payloads.OnNext(message.Data ?? "null"u8.ToArray());
                }
                catch (Exception ex)
                {
                    ClientLog.ObserverFailed(client.Logger, message.Name, ex);
                }
            }
            return;
        }
        if (message.OriginalAction == (int)EventAction.Subscribe && message.Action is (int)EventAction.MessageDenied or (int)EventAction.MessagePermissionError && message.Name is { } refused)
        {
            Subscription? subscription;
            lock (Gate)
            {
                _subscriptions.TryGetValue(refused, out subscription);
            }
            subscription?.Acknowledged.TrySetException(new StateMeshProtocolException(
                $"The node answered SUBSCRIBE to '{refused}' with {ActionNames.Of(Topic.Event, message.Action)}{(message.Data is { } d ? ": " + System.Text.Encoding.UTF8.GetString(d.Span) : "")}.",
                Topic.Event, message.Action));
            return;
        }
        if (message.IsError)
        {
            ClientLog.NodeError(client.Logger, message.ToString());
        }
    }

    private static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
    }

    private sealed class Subscription(string name)
    {
        public string Name { get; } = name;

        public int References { get; set; }

        public Subject<ReadOnlyMemory<byte>> Payloads { get; } = new();

        public TaskCompletionSource Acknowledged { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
